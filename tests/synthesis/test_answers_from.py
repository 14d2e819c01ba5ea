"""`synthesize(..., answers_from=DIR)`: a run reads the answers the work it builds on paid for (an optimization's out
dir, another run dir) where its own cache has none, and does not pay for them again."""

from __future__ import annotations

import pytest
from conftest import run_overrides
from loopback_server import read_log

from refed_dspy import load_config, synthesize
from refed_dspy.errors import ConfigError


def test_a_run_answered_from_an_earlier_runs_cache_sends_nothing_again(server_factory, tmp_path):
    srv = server_factory()
    first = synthesize(load_config(None, run_overrides(srv, tmp_path / "a", 4, **{"seeds.limit": 2})))
    sent = len(read_log(srv.cfg.log_path))
    assert first["usage"]["calls"] == sent > 0
    again = synthesize(
        load_config(None, run_overrides(srv, tmp_path / "b", 4, **{"seeds.limit": 2})), answers_from=tmp_path / "a"
    )
    assert again["status"] == "complete" and len(read_log(srv.cfg.log_path)) == sent  # nothing sent
    assert again["usage"]["calls"] == 0 and again["usage"]["cached_calls"] == sent
    # copied into the run's own cache: resumed or read without the earlier dir, it still has them
    assert any((tmp_path / "b" / "cache").glob("*/cache.db"))


def test_answers_from_a_directory_with_no_cache_is_one_clear_error(server_factory, tmp_path):
    srv = server_factory()
    with pytest.raises(ConfigError, match="answers_from: .* holds no cache"):
        synthesize(load_config(None, run_overrides(srv, tmp_path / "b", 4)), answers_from=tmp_path / "nothing")
    assert read_log(srv.cfg.log_path) == []


def test_the_cli_takes_answers_from_too(server_factory, tmp_path):
    """`refed synthesize --answers-from DIR`: what the Python API's answers_from does, from the command line (after
    `refed optimize`, `--program` alone paid for the examples' feedback again)."""
    from cli_helpers import run_refed, sets

    srv = server_factory()
    synthesize(load_config(None, run_overrides(srv, tmp_path / "a", 4, **{"seeds.limit": 2})))
    sent = len(read_log(srv.cfg.log_path))
    over = sets(run_overrides(srv, tmp_path / "b", 4, **{"seeds.limit": 2}))
    code, out, err = run_refed("synthesize", *over, "--answers-from", str(tmp_path / "a"))
    assert code == 0, err
    assert len(read_log(srv.cfg.log_path)) == sent  # nothing sent again
    code, _, err = run_refed("synthesize", *sets(run_overrides(srv, tmp_path / "c", 4)), "--answers-from", "nowhere")
    assert code == 2 and "--answers-from: nowhere holds no cache" in err and len(err.strip().splitlines()) == 1, err
