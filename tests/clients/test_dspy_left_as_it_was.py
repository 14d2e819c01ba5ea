"""Using refed_dspy leaves DSPy as it was: importing it, and `refed_dspy.synthesize` and `refed_dspy.optimize`
returning, leave dspy.BaseLM's call methods (caught only while a run routes LMs' calls) and DSPy's ParallelExecutor
the very objects they were before. A fresh process records them before the import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from conftest import run_overrides

SCRIPT = textwrap.dedent(
    """
    import json, sys

    import dspy
    from dspy.utils.parallelizer import ParallelExecutor

    WATCHED = {
        "dspy.BaseLM.__call__": lambda: dspy.BaseLM.__dict__["__call__"],
        "dspy.BaseLM.acall": lambda: dspy.BaseLM.__dict__["acall"],
        "ParallelExecutor.__init__": lambda: ParallelExecutor.__dict__["__init__"],
    }
    before = {name: get() for name, get in WATCHED.items()}
    changed = {}

    def check(when):
        changed[when] = sorted(name for name, get in WATCHED.items() if get() is not before[name])

    import refed_dspy
    from refed_dspy.config import load_config

    check("import")
    synthesis, optimization = json.loads(sys.argv[1])
    refed_dspy.synthesize(load_config(None, synthesis))
    check("synthesize")
    refed_dspy.optimize(load_config(None, optimization))
    check("optimize")
    print(json.dumps(changed))
    """
)


def test_importing_and_running_leave_dspys_methods_as_they_were(server_factory, tmp_path):
    teacher, judge = server_factory(), server_factory()
    synthesis = run_overrides(teacher, tmp_path / "run", 4)
    optimization = run_overrides(
        teacher,
        tmp_path / "examples",
        4,
        **{
            "judge.api_base": f"'{judge.api_base}'",
            "judge.api_key_env": "''",
            "optimize.out": f"'{tmp_path / 'opt'}'",
            "optimize.optimizer": "'bootstrap'",
            "optimize.n_train": 2,
            "optimize.n_val": 2,
        },
    )
    (tmp_path / "script.py").write_text(SCRIPT, encoding="utf-8")
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "true"}
    done = subprocess.run(
        [sys.executable, "script.py", json.dumps([synthesis, optimization])],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    changed = json.loads(done.stdout.strip().splitlines()[-1])
    assert changed == {"import": [], "synthesize": [], "optimize": []}
