"""The run dir's lock as a reader sees it: who holds it, found without taking it."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from cli_helpers import lock_holder

from refed_dspy.store import lock
from refed_dspy.store.lock import LOCK_NAME, holder


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="the kernel's lock table is Linux's")
def test_holder_names_pid_and_host_without_taking_the_lock(tmp_path, monkeypatch):
    def no_flock(*args):
        raise AssertionError("a reader took the lock")

    proc = lock_holder(tmp_path)
    try:
        monkeypatch.setattr(lock.fcntl, "flock", no_flock)
        who = holder(tmp_path)
        assert who is not None and who["pid"] == proc.pid and who["host"] == socket.gethostname()
        assert who["command"] == "refed synthesize" and who["started"]
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10
    while holder(tmp_path) is not None and time.monotonic() < deadline:  # the kernel drops it as the process ends
        time.sleep(0.05)
    assert holder(tmp_path) is None and (tmp_path / LOCK_NAME).exists()  # a dead holder's file holds nothing
