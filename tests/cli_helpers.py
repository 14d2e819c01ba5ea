"""Running `refed` as a subprocess, the way a user does, for the tests of every folder; and a compiled-looking
pipeline whose requests say which predictor sent them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dspy

from refed_dspy.methods import METHODS, Defaults

# which signature a request logged by the loopback server asked for, by its output fields
STAGE_OF = {
    ("subject_areas", "relevant_skills"): "collect.describe",
    ("response_feedback",): "collect.critique",
    ("new_instructions",): "synthesizer.synthesize",
    ("response",): "respond.generate",
    ("analysis", "implementation_strategy", "improved_response"): "respond.improve",
}


def refed(*args: str, env_extra: dict[str, str] | None = None, **kw) -> subprocess.Popen:
    """`refed ARGS` started in the background (stdout and stderr piped, text)."""
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "true", **(env_extra or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "refed_dspy.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def crash_env(crash: str, env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a process that kills itself with SIGKILL at the checkpoint `crash`
    (`<checkpoint>[@<stage>][:<nth>]`, refed_dspy.runtime.stops): tests/crash_at/sitecustomize.py put on its
    PYTHONPATH, as a crash or `kill -9` at that point would."""
    env = dict(os.environ if env is None else env)
    env["REFED_CRASH_AT"] = crash
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent / "crash_at"), env.get("PYTHONPATH")]))
    return env


def run_refed(*args: str, timeout: float = 600, env_extra: dict[str, str] | None = None) -> tuple[int, str, str]:
    """`refed ARGS` run to its end (`env_extra` added to its environment): (exit code, stdout, stderr)."""
    env = {**os.environ, **(env_extra or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "refed_dspy.cli", *args], capture_output=True, text=True, timeout=timeout, env=env
    )
    return proc.returncode, proc.stdout, proc.stderr


def sets(overrides: list[str]) -> list[str]:
    """--set options for each `section.key=value`."""
    return [x for o in overrides for x in ("--set", o)]


def lines(path: Path) -> list[dict]:
    """The records of a JSONL file ([] when it does not exist)."""
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


_HOLD = (
    "import sys, time\n"
    "from refed_dspy.store.lock import DirLock\n"
    "with DirLock(sys.argv[1], 'refed synthesize'):\n"
    "    print('held', flush=True)\n"
    "    time.sleep(120)\n"
)


def lock_holder(path: Path | str) -> subprocess.Popen:
    """Another process holding `path`'s lock as `refed synthesize` would (it says `held` once it has it); the
    caller kills it."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def predicted_in_a_fresh_process(model_uri: str, tracking_uri: str, inputs: dict, env: dict[str, str]) -> dict:
    """`mlflow.pyfunc.load_model(model_uri).predict(inputs)` in a new Python process with environment `env`: what a
    user who loads a logged program elsewhere gets (the test fails with that process's stderr)."""
    script = (
        "import json, mlflow\n"
        f"mlflow.set_tracking_uri({tracking_uri!r})\n"
        f"model = mlflow.pyfunc.load_model({model_uri!r})\n"
        f"print(json.dumps(model.predict({inputs!r}), default=str))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def marked_pipeline(tag: str, method: str = "refed") -> dspy.Module:
    """The method's pipeline with every predictor's instructions replaced by a marker naming it (as a compiled
    pipeline would differ from the built-in one), and one demo on the generator."""
    program = METHODS.get(method).build_pipeline(Defaults(instructions_per_feature=2))
    for name, pred in program.named_predictors():
        pred.signature = pred.signature.with_instructions(f"MARK-{tag}-{name}: do the task well.")
    program.respond.generate.demos = [
        dspy.Example(example_instruction="Ex?", example_response="Ex.", instruction="Say hi.", response="Hi.")
    ]
    return program


def marked_stages(log: list[dict], tag: str) -> set[str]:
    """The predictors that sent the requests of a loopback log (logged with log_prompts), each request checked to
    carry the instructions marked_pipeline(tag) compiled into its predictor."""
    seen = set()
    for entry in log:
        stage = STAGE_OF[tuple(entry["outputs"])]
        assert f"MARK-{tag}-{stage}:" in entry["system"], (stage, entry["system"][:300])
        seen.add(stage)
    return seen
