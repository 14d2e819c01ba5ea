"""The built wheel installs everything under refed_dspy/ and no generic top-level package."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_layout(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = next(tmp_path.glob("refed_dspy-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    code = [n for n in names if not n.startswith("refed_dspy-") or not n.split("/")[0].endswith(".dist-info")]
    tops = {n.split("/")[0] for n in code}
    assert tops == {"refed_dspy"}, tops
    for expected in (
        "refed_dspy/signatures/improve_response.py",
        "refed_dspy/programs/respond_and_improve.py",
        "refed_dspy/optimizers/__init__.py",
        "refed_dspy/adapters/chat.py",
        "refed_dspy/data/seeds.jsonl",
        "refed_dspy/cli.py",
    ):
        assert expected in names
    meta = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "refed = refed_dspy.cli:main" in zipfile.ZipFile(wheel).read(meta).decode()
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names)


def test_cli_help_of_every_command():
    run = subprocess.run([sys.executable, "-m", "refed_dspy.cli", "--help"], capture_output=True, text=True)
    assert run.returncode == 0 and "synthesize" in run.stdout and "Reference-Level Feedback" in run.stdout
    for cmd in (
        "synthesize",
        "config",
        "seeds",
        "compare",
        "judge",
        "filter",
        "report",
        "export",
        "optimize",
        "serve-local",
        "repair",
        "view",
    ):
        h = subprocess.run([sys.executable, "-m", "refed_dspy.cli", cmd, "--help"], capture_output=True, text=True)
        assert h.returncode == 0 and "usage: refed" in h.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "refed_dspy.cli", "optimize", "--config", "no-such.toml"], capture_output=True, text=True
    )
    assert missing.returncode == 2 and "config file not found" in missing.stderr and "Traceback" not in missing.stderr
