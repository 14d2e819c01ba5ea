"""How long a run takes here: the estimate's tokens at the speed the local server measures now."""

from __future__ import annotations

from pathlib import Path

import pytest

from refed_dspy.clients import local_server
from refed_dspy.clients.local_server import LocalServer, Speed
from refed_dspy.config import load_config
from refed_dspy.store.seeds import load_references
from refed_dspy.synthesis import estimate
from refed_dspy.synthesis.estimate import eta_line, seconds_for

LOCAL = Path(__file__).resolve().parents[2] / "configs" / "local.toml"


def served(monkeypatch):
    """The config's local server is taken as listening (its speed is the stand-in's; it is asked for no reply)."""
    monkeypatch.setattr(estimate, "listening", lambda url: True)
    monkeypatch.setattr(estimate, "sample_reply", lambda url, messages, settings: None)


def test_seconds_are_the_uncached_prompt_read_and_the_completion_written():
    total = {"prompt_tokens": 12_000.0, "cached_tokens": 2_000.0, "completion_tokens": 3_000.0}
    assert seconds_for(total, Speed(prompt_per_s=100.0, completion_per_s=10.0)) == pytest.approx(100 + 300)


def test_the_line_says_the_time_for_the_run_s_size(monkeypatch):
    config = load_config(LOCAL, ["synthesis.size=20"])
    monkeypatch.setattr(estimate, "measure_speed", lambda url, slots, **sizes: Speed(400.0, 40.0))
    served(monkeypatch)
    server = LocalServer(None, "http://127.0.0.1:9", Path(local_server.GGUF), 2, 8192)
    line = eta_line(config, server)
    assert line is not None and line.startswith("local model: a run of 20 samples takes about ")
    assert "write at 40.0/s" in line and "read at 400/s" in line
    assert "replies assumed at" in line and "--pilot" not in line  # the run itself measures them: no pilot offered
    monkeypatch.setattr(estimate, "measure_speed", lambda url, slots, **sizes: None)  # a server that reports no timings
    assert eta_line(config, server) is None


def test_a_resumed_run_is_told_the_time_of_the_samples_it_has_left(monkeypatch):
    config = load_config(LOCAL, ["synthesis.size=20"])
    monkeypatch.setattr(estimate, "measure_speed", lambda url, slots, **sizes: Speed(400.0, 40.0))
    served(monkeypatch)
    server = LocalServer(None, "http://127.0.0.1:9", Path(local_server.GGUF), 2, 8192)
    whole, rest = eta_line(config, server), eta_line(config, server, left=5)
    assert rest is not None and rest.startswith("local model: the 5 samples left of 20 take about ")

    def calls(line: str) -> int:
        return int(line.split(" LM calls")[0].rsplit("(", 1)[1].replace(",", ""))

    assert calls(rest) < calls(whole) / 2
    assert eta_line(config, server, left=20) == whole
    last = eta_line(config, server, left=1)
    assert last is not None and last.startswith("local model: the last sample of this run of 20 takes about ")


def test_a_run_s_references_are_walked_as_they_are_and_the_seeds_not_read_again(monkeypatch, tmp_path):
    """synthesize says how long the run takes once it has read its references: the estimate walks those, and reads no
    seeds of its own (here [seeds] names a file that is gone: reading it would give no line)."""
    config = load_config(LOCAL, ["synthesis.size=20", f"seeds.source='{tmp_path / 'gone.jsonl'}'"])
    monkeypatch.setattr(estimate, "measure_speed", lambda url, slots, **sizes: Speed(400.0, 40.0))
    served(monkeypatch)
    server = LocalServer(None, "http://127.0.0.1:9", Path(local_server.GGUF), 2, 8192)
    assert eta_line(config, server) is None  # the estimate cannot read [seeds]
    line = eta_line(config, server, load_references(None)[:3])
    assert line is not None and line.startswith("local model: a run of 20 samples takes about ")


def test_the_speed_is_measured_with_requests_the_size_of_the_run_s_mean_call(monkeypatch):
    """A loaded machine wrote a few tokens three times faster than the run's calls: the check reads and writes what a
    call of the run does (writing cut to 64 tokens)."""
    asked: list[dict] = []
    monkeypatch.setattr(estimate, "measure_speed", lambda url, slots, **sizes: asked.append(sizes) or Speed(400.0, 4.0))
    served(monkeypatch)
    config = load_config(LOCAL, ["synthesis.size=20"])
    server = LocalServer(None, "http://127.0.0.1:9", Path(local_server.GGUF), 2, 8192)
    est = estimate.estimate(config, load_references(None)[:3])
    total = est.total
    mean_read = (total["prompt_tokens"] - total.get("cached_tokens", 0)) / total["calls"]
    assert asked[-1]["prompt_tokens"] == int(mean_read) > 96
    assert asked[-1]["completion_tokens"] == min(64, int(total["completion_tokens"] / total["calls"])) > 8
    assert eta_line(config, server, load_references(None)[:3]) is not None


def test_probe_sizes_keep_the_check_short():
    assert estimate.probe_sizes({"calls": 10.0, "prompt_tokens": 90_000.0, "completion_tokens": 20_000.0}) == (2048, 64)
    assert estimate.probe_sizes({"calls": 0.0, "prompt_tokens": 0.0, "completion_tokens": 0.0}) == (32, 8)
    assert estimate.probe_sizes(
        {"calls": 4.0, "prompt_tokens": 2_000.0, "cached_tokens": 400.0, "completion_tokens": 100.0}
    ) == (400, 25)
