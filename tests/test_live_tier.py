"""The live tier (tests/test_live.py) is a tier the suite runs: left out by default, skipped with what to set when
asked without an endpoint, and passing against one (here the loopback server stands in for yours)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from loopback_server import read_log

TESTS = Path(__file__).resolve().parent


def _pytest(tmp_path: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", f"--basetemp={tmp_path}", *args],
        cwd=TESTS.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode in (0, 5), done.stdout[-3000:] + done.stderr[-2000:]  # 5: nothing collected
    return done.stdout


def test_the_live_tier_is_asked_for_says_what_to_set_and_runs_against_an_endpoint(server_factory, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFED_LIVE_")}
    live = str(TESTS / "test_live.py")
    assert "1 deselected" in _pytest(tmp_path / "default", env, live)  # the default run leaves it out
    said = _pytest(tmp_path / "asked", env, "-m", "live", live)
    assert "1 skipped" in said and "set REFED_LIVE_MODEL" in said, said[-2000:]
    srv = server_factory()
    endpoint = {"REFED_LIVE_MODEL": "openai/gpt-4o-mini", "REFED_LIVE_API_BASE": srv.api_base, "REFED_LIVE_KEY_ENV": ""}
    said = _pytest(tmp_path / "ran", {**env, **endpoint}, "-m", "live", live)
    assert "1 passed" in said, said[-3000:]
    assert sum(1 for e in read_log(srv.cfg.log_path) if e.get("status") == 200) > 0
