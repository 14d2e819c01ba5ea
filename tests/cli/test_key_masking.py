"""A key the provider echoes is printed and saved nowhere: a gateway that quotes the request's Authorization header in
its 500 and 401 bodies, a run with a distinctive key, and the key's value in no output (stdout, stderr, with and
without --debug), no file (the run dir, the MLflow store: every file under the test's directory, read as bytes) and no
page of `refed view` (its rejects, from this run and from a file an older version wrote unmasked)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from cli_helpers import run_refed, sets
from conftest import run_overrides, start_refed_server
from loopback_server import read_log

KEY = "sk-refed-fake-Q7XK2M9PZL4WBV8N"
MASKED = "sk-...BV8N"
VARIABLE = "REFED_GATEWAY_KEY"


def _files_holding(root: Path, needle: str) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def _run(srv, tmp_path: Path, name: str, debug: bool) -> tuple[int, str, str]:
    over = run_overrides(srv, tmp_path / name, 6, **{"seeds.limit": 2, "teacher.num_retries": 0})
    over = [o for o in over if not o.startswith("teacher.api_key_env")] + [
        f"teacher.api_key_env='{VARIABLE}'",
        "tracking.enabled=true",
        f"tracking.mlflow_uri='sqlite:///{tmp_path / 'mlflow.db'}'",
    ]
    return run_refed(*(["--debug"] if debug else []), "synthesize", *sets(over))


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
def test_an_echoed_key_is_in_no_output_and_no_file(server_factory, tmp_path, monkeypatch, debug):
    monkeypatch.chdir(tmp_path)  # MLflow's artifacts land beside its store
    monkeypatch.setenv(VARIABLE, KEY)
    flaky = server_factory(rate_500=0.5, echo_key=True)  # finishes, with rejects quoting the key
    refusing = server_factory(fail_status=401, echo_key=True)  # exit 2 after its first requests
    failing = server_factory(fail_all=True, echo_key=True)  # exit 3 after consecutive failures
    results = {
        name: _run(srv, tmp_path, name, debug)
        for name, srv in (("flaky", flaky), ("refusing", refusing), ("failing", failing))
    }
    assert results["flaky"][0] in (0, 1) and results["refusing"][0] == 2 and results["failing"][0] == 3, results
    for name, (_, out, err) in results.items():
        assert KEY not in out and KEY not in err, (name, out[-2000:], err[-2000:])
    # the key did come back from the servers: what quotes it says so, masked
    assert MASKED in results["refusing"][2] and MASKED in results["failing"][2]
    rejects = [json.loads(line) for line in (tmp_path / "flaky" / "rejects.jsonl").read_text().splitlines()]
    assert any(MASKED in r.get("detail", "") for r in rejects), rejects[:3]
    assert (tmp_path / "mlflow.db").exists()
    assert _files_holding(tmp_path, KEY) == []
    assert _files_holding(tmp_path, MASKED)  # (the search does find what is there)

    proc, url = start_refed_server(["view", str(tmp_path / "flaky"), "--port", "0"], r"(http://127\.0\.0\.1:\d+)/")
    try:
        with urllib.request.urlopen(url + "/rejects", timeout=30) as reply:
            page = reply.read().decode()
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    assert "api_error" in page and MASKED in page and KEY not in page


def test_the_viewer_masks_a_key_an_older_version_wrote(run, monkeypatch):
    """Rejects written before refed masked keys: the viewer's pages mask them (the viewer's process holds the key)."""
    monkeypatch.setenv(VARIABLE, KEY)
    with open(run / "rejects.jsonl", "a", encoding="utf-8") as fh:
        detail = f"[openai/x] the gateway answers 401 (request header authorization: Bearer {KEY})"
        fh.write(json.dumps({"stage": "sample", "reason": "auth", "detail": detail, "final": True}) + "\n")
    (run / "report.html").write_text(f"<html><body>{KEY}</body></html>")
    proc, url = start_refed_server(["view", str(run), "--port", "0"], r"(http://127\.0\.0\.1:\d+)/")
    try:
        pages = []
        for path in ("/rejects", "/rejects?stage=sample&reason=auth", "/report"):
            with urllib.request.urlopen(url + path, timeout=30) as reply:
                pages.append(reply.read().decode())
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    assert all(KEY not in page for page in pages)
    assert MASKED in pages[1] and MASKED in pages[2]


def test_a_key_echoed_in_every_answer_is_in_no_file_of_the_run_dir_cache_included(server_factory, tmp_path):
    """A gateway that quotes the request's key in its successful answers: every answer paid for is kept in the run's
    cache, and the cache holds it masked (a resumed run replays the masked text). Before the cache masked, 15 of 16
    shards under cache/ held the whole key."""
    srv = server_factory(echo_key_in_answers=True)
    over = run_overrides(srv, tmp_path / "run", 6, **{"seeds.limit": 2})
    over = [o for o in over if not o.startswith("teacher.api_key_env")] + [f"teacher.api_key_env='{VARIABLE}'"]
    code, out, err = run_refed("synthesize", *sets(over), env_extra={VARIABLE: KEY})
    assert code == 0, err
    assert KEY not in out + err
    cache = tmp_path / "run" / "cache"
    assert any(p.is_file() for p in cache.rglob("*"))
    assert _files_holding(tmp_path / "run", KEY) == []
    assert _files_holding(cache, MASKED)  # the answers were kept, masked
    code, _, err = run_refed("synthesize", *sets(over), env_extra={VARIABLE: KEY})  # resumed: nothing to redo
    assert code == 0 and _files_holding(tmp_path / "run", KEY) == [], err


def test_a_short_key_is_in_no_output_and_no_file(server_factory, tmp_path):
    """`OPENAI_API_KEY=sk-short` (8 characters: under the old 12-character floor it was printed and written) against a
    server that quotes it in its errors and its answers: in no output and no file, while words that only contain it
    are left as they were."""
    flaky = server_factory(rate_500=0.5, echo_key=True, echo_key_in_answers=True)
    over = run_overrides(flaky, tmp_path / "run", 6, **{"seeds.limit": 2, "teacher.num_retries": 0})
    over = [o for o in over if not o.startswith("teacher.api_key_env")] + ["teacher.api_key_env='OPENAI_API_KEY'"]
    code, out, err = run_refed("synthesize", *sets(over), env_extra={"OPENAI_API_KEY": "sk-short"})
    assert code in (0, 1), err
    words = (out + err).replace("sk-shorter", "")
    assert "sk-short" not in words, (out[-1500:], err[-1500:])
    assert _files_holding(tmp_path / "run", "sk-short") == []
    rejects = (tmp_path / "run" / "rejects.jsonl").read_text()
    assert "Bearer ***" in rejects  # the server did quote it


def _runs_in(root: Path, key: str, length: int = 12) -> list[str]:
    """The files under `root` that hold a run of `length` characters of `key`."""
    runs = [key[i : i + length].encode() for i in range(len(key) - length + 1)]
    return [str(p) for p in root.rglob("*") if p.is_file() and any(r in p.read_bytes() for r in runs)]


def test_pieces_of_a_key_a_gateway_quotes_are_in_no_file_and_no_output(server_factory, tmp_path):
    """A gateway that quotes the key's first 20 characters and the key broken in two by a newline in every answer, 200
    of them: no file under the run dir (its cache included), no output of the command and no page of the viewer holds
    12 characters of the key in a row. Before, only whole values were masked: 20 to 23 characters of it were in the
    samples, rejects, feedback, the journal and 15 of 16 cache shards."""
    srv = server_factory(echo_key_pieces=True)
    over = run_overrides(srv, tmp_path / "run", 92, **{"seeds.limit": 4})
    over = [o for o in over if not o.startswith("teacher.api_key_env")] + [f"teacher.api_key_env='{VARIABLE}'"]
    code, out, err = run_refed("--debug", "synthesize", *sets(over), env_extra={VARIABLE: KEY})
    assert code == 0, err
    answered = [e for e in read_log(srv.cfg.log_path) if e.get("path", "").endswith("/chat/completions")]
    assert len(answered) >= 200, len(answered)
    samples = (tmp_path / "run" / "samples.jsonl").read_text()
    assert "your key begins ***" in samples and "it reads ***" in samples  # the gateway did quote it
    assert [KEY[i : i + 12] for i in range(len(KEY) - 11) if KEY[i : i + 12] in out + err] == []
    assert _runs_in(tmp_path / "run", KEY) == []
    proc, url = start_refed_server(["view", str(tmp_path / "run"), "--port", "0"], r"(http://127\.0\.0\.1:\d+)/")
    try:
        sample_id = json.loads(samples.splitlines()[0])["meta"]["id"]
        for path in ("/", f"/sample/{sample_id}"):
            with urllib.request.urlopen(url + path, timeout=30) as reply:
                page = reply.read().decode()
            assert not [KEY[i : i + 12] for i in range(len(KEY) - 11) if KEY[i : i + 12] in page]
            assert "***" in page or path == "/"
    finally:
        proc.kill()
        proc.communicate(timeout=30)
