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
        "refed_dspy/signatures/synthesis.py",
        "refed_dspy/programs/synthesis.py",
        "refed_dspy/optimizers/__init__.py",
        "refed_dspy/adapters/chat.py",
        "refed_dspy/data/seeds.jsonl",
        "refed_dspy/cli/__init__.py",
        "refed_dspy/view/templates/base.html",
        "refed_dspy/view/templates/style.css",
        "refed_dspy/quality/templates/report.html",
        "refed_dspy/quality/templates/report.css",
        "refed_dspy/experiments/templates/experiment_chart.html",
        "refed_dspy/experiments/templates/experiment.css",
        "refed_dspy/export/templates/card.md",
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


def test_help_states_the_exit_codes_and_judge_has_its_actions():
    run = subprocess.run([sys.executable, "-m", "refed_dspy.cli", "--help"], capture_output=True, text=True)
    for code in ("0    done", "1    finished short", "2    your input", "3    stopped by the provider", "128+N"):
        assert code in run.stdout, code
    for args in (
        ["judge", "run", "--help"],
        ["judge", "meta-eval", "--help"],
        ["estimate", "--help"],
        ["status", "--help"],
    ):
        h = subprocess.run([sys.executable, "-m", "refed_dspy.cli", *args], capture_output=True, text=True)
        assert h.returncode == 0 and f"usage: refed {' '.join(args[:-1])}" in h.stdout, args


def test_refed_judge_takes_its_action_first(tmp_path):
    """`refed judge RUN_DIR` (a form from before `run` and `meta-eval` were subcommands) is refused by the parser,
    naming the actions: exit 2, no traceback."""
    old = subprocess.run(
        [sys.executable, "-m", "refed_dspy.cli", "judge", str(tmp_path / "no-run")], capture_output=True, text=True
    )
    assert old.returncode == 2 and "invalid choice" in old.stderr and "'run'" in old.stderr
    assert "Traceback" not in old.stderr


def test_a_command_group_without_its_action_prints_its_help_and_estimate_json_is_json_alone(tmp_path):
    import json

    for group in ("config", "judge"):
        h = subprocess.run([sys.executable, "-m", "refed_dspy.cli", group], capture_output=True, text=True)
        assert h.returncode == 2 and f"usage: refed {group}" in h.stdout and "ACTION" in h.stdout, h.stderr
        assert "error" not in h.stderr
    est = subprocess.run(
        [
            sys.executable,
            "-m",
            "refed_dspy.cli",
            "estimate",
            "--json",
            "--set",
            f"run.dir='{tmp_path / 'run'}'",
            "--set",
            "teacher.api_base='http://127.0.0.1:9/v1'",
            "--set",
            "teacher.api_key_env=''",
            "--set",
            "synthesis.size=20",
            "--set",
            "seeds.limit=4",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert est.returncode == 0, est.stderr[-2000:]
    e = json.loads(est.stdout)  # the whole of stdout
    assert e["size"] == 20 and "total" in e and (tmp_path / "run" / "estimate.json").exists()
    assert "wrote" in est.stderr


def test_test_files_have_unique_names():
    """tests/ has no __init__.py: pytest imports each test file by its base name, so two files of one name in two
    folders collide when one xdist worker collects both ('import file mismatch': a CI run lost a whole file so)."""
    from collections import Counter

    names = Counter(p.name for p in Path(__file__).parent.rglob("test_*.py"))
    assert not [n for n, k in names.items() if k > 1], names
