"""The Ray processes a killed command left behind, ended by the next start in its directory: only those written down by
a driver that no longer runs, and only while each is still the same process (its id, start time and command)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from refed_dspy.launch.ray import connect
from refed_dspy.launch.ray.connect import FILE, end_left_behind, record

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")


@pytest.fixture
def spawn():
    started: list[subprocess.Popen] = []

    def start(*argv: str) -> subprocess.Popen:
        proc = subprocess.Popen(list(argv))
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _known(proc: subprocess.Popen) -> connect.Process:
    found = connect._process(proc.pid)
    assert found is not None
    return found


def _entry(driver: connect.Process, processes: list[connect.Process]) -> dict:
    return {"boot": connect._boot(), "driver": asdict(driver), "processes": [asdict(p) for p in processes]}


def test_ends_what_a_dead_driver_left_and_nothing_else(spawn, tmp_path, caplog):
    driver = spawn("sleep", "60")
    dead = _known(driver)
    driver.kill()
    driver.wait(10)
    left = spawn("sleep", "60")
    reused, renamed, of_a_live_driver = spawn("sleep", "60"), spawn("sleep", "60"), spawn("sleep", "60")
    recorded = [
        _known(left),
        replace(_known(reused), started=_known(reused).started + 1),  # its id given to another process since
        replace(_known(renamed), command="raylet"),
        connect.Process(2**22 + 7, 1, "raylet"),  # gone
    ]
    live = _entry(connect._process(os.getpid()), [_known(of_a_live_driver)])
    (tmp_path / FILE).write_text(json.dumps([_entry(dead, recorded), live]))

    with caplog.at_level(logging.INFO, logger="refed_dspy.launch.ray.connect"):
        assert end_left_behind(tmp_path) == 1
    assert left.wait(10) is not None
    assert reused.poll() is None and renamed.poll() is None and of_a_live_driver.poll() is None
    assert json.loads((tmp_path / FILE).read_text()) == [live]  # a running driver's entry stays
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and said[0].startswith("ended 1 Ray process that a killed run left behind"), said
    assert end_left_behind(tmp_path) == 0 and not caplog.records[1:]


def test_records_the_ray_processes_it_started_and_forgets_them(spawn, tmp_path):
    """What `record` writes down: this process's descendants run from Ray's package (a stand-in directory here), not
    any other child of it."""
    fake_ray = tmp_path / "site-packages" / "ray"
    fake_ray.mkdir(parents=True)
    (fake_ray / "agent.py").write_text("import time\ntime.sleep(60)\n")
    agent, other = spawn(sys.executable, str(fake_ray / "agent.py")), spawn("sleep", "60")
    assert record(tmp_path, str(fake_ray)) == 1
    (entry,) = json.loads((tmp_path / FILE).read_text())
    assert entry["driver"]["pid"] == os.getpid()
    assert [p["pid"] for p in entry["processes"]] == [agent.pid] != [other.pid]
    assert end_left_behind(tmp_path) == 0 and agent.poll() is None  # its driver (this process) runs
    connect.forget(tmp_path)
    assert not (tmp_path / FILE).exists()


def test_a_run_dir_another_command_holds_is_refused_before_ray_starts(tmp_path, monkeypatch):
    """A second driver on a run dir in use: refused in the one line the lock says, before Ray and its workers start (it
    started a local Ray with its workers, then met the lock); a run dir nobody holds goes on to start them."""
    from refed_dspy.config import Config
    from refed_dspy.errors import RunDirError
    from refed_dspy.launch import plan as plan_module
    from refed_dspy.store.lock import DirLock

    started = []
    monkeypatch.setattr(plan_module, "start_pool", lambda *a, **k: started.append(a))
    config = Config.model_validate({"ray": {"enabled": True}})
    launch = plan_module.Launch(
        "teacher", config.teacher, "online", None, config.ray, config.batch, config.prices, 30.0
    )
    run = tmp_path / "run"
    held = pytest.raises(RunDirError, match=f"is in use by PID {os.getpid()} \\(refed synthesize")
    with DirLock(run, "refed synthesize", "run directory"), held:
        launch.workers({}, 4, run, False)
    assert started == []
    launch.workers({}, 4, run, False)
    assert len(started) == 1
