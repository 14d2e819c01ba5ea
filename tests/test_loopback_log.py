"""The loopback server's request log, which every ledger test compares against: a line a client's answer already
came from is there when a test reads the log, however late the server's thread writes it."""

from __future__ import annotations

import json
import time
import urllib.request

import loopback_server
from loopback_server import read_log


def test_the_log_holds_every_answer_already_sent(server_factory, monkeypatch):
    srv = server_factory()
    write = loopback_server._State.record

    def late(self, entry):  # the server's thread is slow to write the line after the answer went out
        time.sleep(0.3)
        write(self, entry)

    monkeypatch.setattr(loopback_server._State, "record", late)
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
    request = urllib.request.Request(
        f"{srv.api_base}/chat/completions", data=body, headers={"Content-Type": "application/json"}
    )
    for _ in range(3):
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert resp.status == 200
    assert len(read_log(srv.cfg.log_path)) == 3
