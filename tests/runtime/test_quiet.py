"""No library noise on first use (issue 51, item 5): a command on a fresh machine says its own lines and nothing of
matplotlib's font cache, MLflow's new database and experiment, or MLflow's warnings about a dataset's source."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cli_helpers import sets
from conftest import run_overrides

# a Timer of 5 s fires at once: matplotlib says it is building its font cache after 5 s (on a loaded machine, the
# first `refed report` said it), so here it always does
_SLOW_MACHINE = """
import threading

class _AtOnce(threading.Timer):
    def __init__(self, interval, function, *args, **kwargs):
        super().__init__(0 if interval == 5 else interval, function, *args, **kwargs)

    def start(self):
        super().start()
        if self.interval == 0:
            self.join()

threading.Timer = _AtOnce
"""


def _refed(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "true", **env}
    return subprocess.run(
        [sys.executable, "-m", "refed_dspy.cli", *args], capture_output=True, text=True, env=full, timeout=600
    )


def test_the_first_report_with_a_fresh_font_cache_says_nothing_of_it(run, tmp_path):
    """A fresh MPLCONFIGDIR, and a machine slow enough that matplotlib says "Matplotlib is building the font cache;
    this may take a moment." (it did, with "generated new fontManager"): `refed report` prints nothing on stderr."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_SLOW_MACHINE)
    fonts = tmp_path / "mpl"
    path = os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])
    done = _refed(["report", str(run)], {"MPLCONFIGDIR": str(fonts), "PYTHONPATH": path})
    assert done.returncode == 0, done.stderr
    assert list(fonts.glob("fontlist-*.json")), "matplotlib built no font cache: the test shows nothing"
    assert done.stderr == ""
    assert (run / "report.html").exists() and done.stdout.startswith(f"report {run} ")


def test_a_tracked_run_and_its_export_say_nothing_of_mlflow(server_factory, tmp_path):
    """The first tracked run creates MLflow's database and experiment (MLflow said so in three INFO lines); its export
    logs the splits as datasets (MLflow warned twice that a local path "can be interpreted in multiple ways", with
    its file and line): only refed's own lines are left."""
    srv = server_factory()
    run = tmp_path / "run"
    tracking = ["tracking.enabled=true", f"tracking.mlflow_uri='sqlite:///{tmp_path / 'mlflow.db'}'"]
    over = run_overrides(srv, run, 4, **{"seeds.limit": 2, "synthesis.instructions_per_feature": 2}) + tracking
    env = {"MPLCONFIGDIR": str(tmp_path / "mpl")}
    made = _refed(["synthesize", *sets(over)], env)
    assert made.returncode == 0, made.stderr
    assert made.stderr.splitlines() == ["loaded 2 references from embedded (plain shape, 2 rows); skipped: none"]
    out = tmp_path / "export"
    exported = _refed(["export", str(run), "--format", "parquet", "--out", str(out), *sets(tracking)], env)
    assert exported.returncode == 0, exported.stderr
    assert (out / "train.parquet").exists()
    said = exported.stderr.splitlines()
    assert all(line.startswith("warning: validation holds") for line in said), said  # the split's own note, if any
    assert (tmp_path / "mlflow.db").exists() and Path(run / "summary.json").exists()
