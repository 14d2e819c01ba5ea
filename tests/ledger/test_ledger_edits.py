"""A run's write-ahead ledger edited to say less was paid is refused before any request (issue 66): a finished run's
`ledger.jsonl` emptied, or one paid call's lines deleted, then resumed with a larger `synthesis.size`: one line naming
the file, exit 2, and the server sees nothing more; `--new-ledger` sets the file aside and goes on."""

from __future__ import annotations

import json

import pytest
from cli_helpers import run_refed, sets
from conftest import run_overrides
from loopback_server import read_log


def _emptied(lines: list[str]) -> list[str]:
    return []


def _a_paid_call_deleted(lines: list[str]) -> list[str]:
    paid = next(json.loads(x)["p"] for x in lines[len(lines) // 2 :] if "t" in json.loads(x))
    return [x for x in lines if json.loads(x).get("s") != paid and json.loads(x).get("p") != paid]


@pytest.mark.parametrize("edit", [_emptied, _a_paid_call_deleted], ids=["emptied", "a-paid-call-deleted"])
def test_an_edited_ledger_stops_the_resume_before_any_request(server_factory, tmp_path, edit):
    srv = server_factory()
    over = run_overrides(srv, tmp_path / "run", 6, **{"seeds.limit": 2})
    code, _, err = run_refed("synthesize", *sets(over))
    assert code == 0, err
    ledger = tmp_path / "run" / "ledger.jsonl"
    kept = edit(ledger.read_text().splitlines())
    ledger.write_text("".join(line + "\n" for line in kept))
    served = len(read_log(srv.cfg.log_path))
    larger = [o for o in over if not o.startswith("synthesis.size")] + ["synthesis.size=10"]
    code, out, err = run_refed("synthesize", *sets(larger))
    said = [line for line in err.splitlines() if line.startswith("refed: error:")]
    assert code == 2 and len(said) == 1 and "Traceback" not in err, err
    assert str(ledger) in said[0] and "--new-ledger" in said[0], err
    assert len(read_log(srv.cfg.log_path)) == served  # no request
    code, _, err = run_refed("synthesize", *sets(larger), "--new-ledger")
    assert code == 0, err
    assert "set aside" in err or "new ledger is started" in err, err
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["samples"] == 10
