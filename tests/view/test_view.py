"""The viewer's pure parts and its index, without a browser (tests/test_browser.py drives the pages)."""

from __future__ import annotations

import json

from markupsafe import escape

from refed_dspy.text.overlap import changed_share, word_diff
from refed_dspy.view.index import Filters, Follower, Row
from refed_dspy.view.routes import beside, pieces


def test_word_diff_rebuilds_both_texts():
    before, after = "The cat sat\non the mat.", "The black cat sat\non a mat today."
    pieces = word_diff(before, after)
    assert "".join(t for op, t in pieces if op != "ins") == before
    assert "".join(t for op, t in pieces if op != "del") == after
    assert ("ins", " black") in pieces and ("del", "the") in pieces and ("ins", "a") in pieces
    assert changed_share("a b c", "a b c") == 0.0 and changed_share("a b", "c d") == 1.0
    assert word_diff("", "new") == [("ins", "new")]


def test_beside_marks_the_runs_copied_on_both_sides():
    ref = ("Name three rivers.", "The Nile, the Amazon and the Yangtze are three of the longest rivers on Earth today.")
    copied = "Good question. The Nile, the Amazon and the Yangtze are three of the longest rivers, I think."
    side = beside({"instruction": "List some lakes.", "response": copied, "meta": {}}, ref, 0.8, measured=True)
    instruction, response = side["parts"]
    assert not instruction["is_copy"] and [c for _, c in instruction["mine"]] == [False]
    marked = [t for t, c in response["mine"] if c]
    assert marked == ["The Nile, the Amazon and the Yangtze are three of the longest rivers"]
    assert [t for t, c in response["theirs"] if c] == marked  # the same run, marked in the reference
    assert "".join(t for t, _ in response["mine"]) == copied and "".join(t for t, _ in response["theirs"]) == ref[1]
    assert response["is_copy"] and response["closeness"].reference_verbatim > 0.8
    rewrite = beside({"instruction": "x", "response": "y", "meta": {}}, ref, 0.8, measured=False)
    assert rewrite["parts"][1]["closeness"] is None and not rewrite["parts"][1]["is_copy"]
    assert pieces("abcdef", [(1, 2), (4, 6)]) == [("a", False), ("b", True), ("cd", False), ("ef", True)]


def test_filters_combine_and_search_needs_every_term():
    row = Row(
        id="1",
        run="",
        method="refed",
        reference_id="r1",
        feature="subject_areas",
        instruction="x",
        score=7.5,
        verdict="win",
        text="explain tides to a child",
    )
    assert Filters(q="TIDES child").keep(row) and not Filters(q="tides moon").keep(row)
    assert Filters(verdict="win", score_min=7, score_max=8, reference="r1").keep(row)
    assert not Filters(score_min=8).keep(row) and not Filters(verdict="unjudged").keep(row)
    assert Filters(verdict="unjudged").keep(
        Row(id="2", run="", method="m", reference_id="r", feature="f", instruction="")
    )


def test_follower_reads_appends_waits_for_a_torn_line_and_restarts_on_rewrite(tmp_path):
    path = tmp_path / "samples.jsonl"
    f = Follower(path)
    assert f.poll() == ([], False)
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": ')
    assert f.poll() == ([{"a": 1}, {"a": 2}], False)
    with open(path, "a") as fh:
        fh.write("3}\n")
    assert f.poll() == ([{"a": 3}], False)
    path.write_text(json.dumps({"a": 9}) + "\n")  # rewritten shorter (a repair): read again from the start
    assert f.poll() == ([{"a": 9}], True)


def test_view_refuses_what_is_not_a_run_dir(tmp_path):
    from cli_helpers import refed

    for args, msg in (([str(tmp_path)], "is not a run dir"), ([str(tmp_path / "nope")], "is not a run dir")):
        p = refed("view", *args, "--port", "0")
        _, err = p.communicate(timeout=60)
        assert p.returncode == 2 and msg in err and len(err.strip().splitlines()) == 1, err


def test_view_of_a_folder_of_runs_names_the_ones_it_can_show(tmp_path):
    """`refed view runs` (the folder the README's run lands in) names what is in it, and `refed view` of one opens."""
    from cli_helpers import refed

    runs = tmp_path / "runs"
    for name in ("local", "quickstart"):
        (runs / name).mkdir(parents=True)
        (runs / name / "samples.jsonl").write_text("")
    (runs / "notes").mkdir()
    p = refed("view", str(runs), "--port", "0")
    _, err = p.communicate(timeout=60)
    assert p.returncode == 2 and len(err.strip().splitlines()) == 1, err
    assert f"it holds 2 run dirs: {runs / 'local'}, {runs / 'quickstart'}; give one of them" in err, err


def test_view_on_a_taken_or_impossible_port_is_one_line_and_exit_2(tmp_path):
    import socket

    from cli_helpers import refed

    (tmp_path / "samples.jsonl").write_text("")
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        for given, msg in ((str(port), f"port {port} on 127.0.0.1 is in use"), ("99999", "--port 99999 is out of")):
            p = refed("view", str(tmp_path), "--port", given)
            try:
                out, err = p.communicate(timeout=60)
            finally:
                p.kill()  # a viewer that served anyway
                p.communicate()
            assert p.returncode == 2 and out == "" and len(err.strip().splitlines()) == 1, (p.returncode, out, err)
            assert err.startswith("refed: error: ") and msg in err and "--port" in err, err
    finally:
        taken.close()


def _get(url: str, **headers: str) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_the_viewer_answers_only_pages_of_this_machine_and_bad_values_are_400(run):
    """A page that reached the viewer under another name (DNS rebinding: Host evil.example.com) or from another
    origin reads nothing; a query value that is not a finite number is a 400, never a 500."""
    from conftest import start_refed_server

    proc, url = start_refed_server(["view", str(run), "--port", "0"], r"(http://127\.0\.0\.1:\d+)/")
    sid = json.loads((run / "samples.jsonl").read_text().splitlines()[0])["meta"]["id"]
    try:
        code, body = _get(url + "/")
        assert code == 200 and f"/sample/{sid}" in body
        code, body = _get(url + "/", Host="evil.example.com")
        assert code == 403 and "/sample/" not in body
        assert _get(url + "/", Origin="http://evil.example.com")[0] == 403
        assert _get(url + "/", Origin=url)[0] == 200
        assert _get(url + "/sample/x", Host="rebind.example.net:80")[0] == 403
        for bad in ("page=1e400", "per=nan", "page=inf", "score_min=lots", "per=-1e999"):
            code, body = _get(f"{url}/?{bad}")
            assert code == 400 and "Bad request" in body, (bad, code)
        assert _get(url + "/?page=99999&per=0")[0] == 200  # out of range: held to the nearest page
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_run_that_ended_with_no_sample_opens_with_its_summary_and_rejects(server_factory, tmp_path):
    """Every reply cut off at max_tokens: the run ends with 0 samples and no samples.jsonl, which is when its rejects
    matter most (refused before: 'is not a run dir')."""
    from cli_helpers import run_refed, sets
    from conftest import run_overrides, start_refed_server

    srv = server_factory(sticky_length=1.0)
    run = tmp_path / "run"
    over = run_overrides(srv, run, 4, **{"seeds.limit": 2, "synthesis.instructions_per_feature": 1})
    code, _, err = run_refed("synthesize", *sets(over))
    assert code != 0 and not (run / "samples.jsonl").exists() and (run / "rejects.jsonl").exists(), err
    rejects = [json.loads(x) for x in (run / "rejects.jsonl").read_text().splitlines()]
    assert rejects and all(r["reason"] == "truncated" and r.get("raw") for r in rejects)
    proc, url = start_refed_server(["view", str(run), "--port", "0"], r"(http://127\.0\.0\.1:\d+)/")
    try:
        code, body = _get(url + "/")
        assert code == 200 and 'id="empty"' in body and "0 of 4 samples" in body, body
        assert "raise teacher.max_tokens" in body and 'href="/rejects"' in body  # why, and where to look
        code, body = _get(url + "/rejects")
        assert code == 200 and f"{len(rejects)} rejects" in body and "truncated" in body
        assert body.count('class="card reject"') == len(rejects)
        assert str(escape(rejects[0]["raw"][:40])) in body  # what the model returned
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_viewer_makes_no_network_request(run, tmp_path):
    """The sample page of a run whose seeds came from the Hub: the viewer reads them from the local cache or not at
    all, and opens no socket but its own (the spy logs every lookup and connect of the process)."""
    import os
    import re
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    hub = tmp_path / "hub-run"
    shutil.copytree(run, hub)
    config = (hub / "config.toml").read_text()
    (hub / "config.toml").write_text(re.sub(r"\[seeds\]\n", '[seeds]\nsource = "GAIR/lima"\n', config, count=1))
    sid = json.loads((hub / "samples.jsonl").read_text().splitlines()[0])["meta"]["id"]
    log = tmp_path / "sockets.log"
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    env.update(PYTHONPATH=str(Path(__file__).parents[1] / "socket_spy"), REFED_SOCKET_LOG=str(log))
    proc = subprocess.Popen(
        [sys.executable, "-m", "refed_dspy.cli", "view", str(hub), "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = re.search(r"(http://127\.0\.0\.1:\d+)/", proc.stdout.readline()).group(1)
        code, body = _get(f"{url}/sample/{sid}")
        assert code == 200 and "Reference" in body
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    seen = {line.split(" ", 1)[1] for line in log.read_text().splitlines()} if log.exists() else set()
    assert seen <= {"127.0.0.1", "localhost", "::1"}, seen


def test_the_viewer_counts_the_calls_a_killed_invocation_had_in_flight(run):
    """The header's paid calls are `refed status`'s: the records, and what the run's write-ahead ledger says no record
    holds. An invocation killed with 3 calls in flight (their lines written before they were sent) adds them as paid,
    up to the most they can cost; before, the viewer showed no spending at all."""
    from refed_dspy.ledger.call_log import CallLog
    from refed_dspy.view.index import View
    from refed_dspy.view.status.run import run_dir_status

    summary = json.loads((run / "summary.json").read_text())
    view = View(run)
    assert view.status()["paid"] == [f"{summary['usage']['calls']} paid LM calls, ${summary['cost_usd']:.4f}"]
    log = CallLog.open(run / "ledger.jsonl")
    for _ in range(3):
        log.sent("teacher", "generate", "openai/gpt-4o-mini", 0.01)
    log.close()  # killed: no end line
    view.refresh()
    calls, cost = summary["usage"]["calls"] + 3, summary["cost_usd"]
    want = f"{calls} paid LM calls (3 of them lost in flight), ${cost:.4f} (up to ${cost + 0.03:.4f})"
    assert view.status()["paid"] == [want]
    s = run_dir_status(run)
    assert (s.calls, s.lost_in_flight, s.cost_up_to_usd) == (calls, 3, round(cost + 0.03, 6))


def _words(count: int, seed: int) -> str:
    """`count` words drawn from a vocabulary of 3,000 made-up ones: two such texts share words but no long runs, the
    word diff's worst case."""
    import random

    rng = random.Random(seed)
    vocabulary = ["".join(rng.choice("abcdefghijklmnop") for _ in range(rng.randint(2, 9))) for _ in range(3000)]
    return " ".join(rng.choice(vocabulary) for _ in range(count))


def test_clip_bounds_every_text_list_and_level_of_a_record():
    from refed_dspy.view.shown import SHOWN_ITEMS, clip, is_clipped, shown

    record = {"a": "x" * 10_000, "b": list(range(10 * SHOWN_ITEMS)), "c": {"d": "short", "e": 3}, "deep": [[[[1]]]]}
    cut = clip(record, limit=100, depth=3)
    assert cut["a"] == "x" * 100 + "…" and cut["b"] == list(range(SHOWN_ITEMS)) and cut["c"] == record["c"]
    assert cut["deep"] == [[None]]  # nothing below `depth` levels
    assert is_clipped(record, limit=100) and not is_clipped(record["c"], limit=100) and not is_clipped(None)
    text = shown("y" * 250, "/whole", limit=100)
    assert text.cut and text.text == "y" * 100 and text.note == "the first 100 of 250 characters"
    assert not shown(None, "/whole").cut


def test_a_sample_of_12_mb_shows_its_start_and_links_to_the_whole(run, monkeypatch):
    """Issue 66: a 10 MB sample kept a viewer thread busy for minutes (the word diff of the whole draft and improved
    response) and its page never came. Now the page shows each text to SHOWN_CHARS characters and every figure reads
    only that much (the word diff and the closeness are never handed more), so its size is bounded; each cut text
    links to its whole, served as plain text and masked, and the record as JSON; the new URLs keep the Host rule."""
    from refed_dspy.view import routes
    from refed_dspy.view.app import create_app
    from refed_dspy.view.index import View
    from refed_dspy.view.shown import SHOWN_CHARS

    key = "sk-proj-" + "Zq7w" * 8
    monkeypatch.setenv("OPENAI_API_KEY", key)
    rows = [json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines()]
    big, small = rows[0], rows[1]
    big["instruction"], big["response"] = _words(600_000, 1), _words(600_000, 2)
    big["improved_response"] = _words(600_000, 3) + f" {key}"  # far past what the page shows: only the whole has it
    (run / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    handed: list[int] = []
    for name in ("word_diff", "closeness", "copied_spans"):
        real = getattr(routes, name)
        monkeypatch.setattr(
            routes, name, lambda a, b, *rest, _real=real: handed.append(max(len(a), len(b))) or _real(a, b, *rest)
        )
    client = create_app(View(run)).test_client()
    here = {"Host": "127.0.0.1:8765"}
    sid = big["meta"]["id"]
    page = client.get(f"/sample/{sid}", headers=here)
    body = page.get_data(as_text=True)
    assert len(json.dumps(big)) > 10_000_000
    assert page.status_code == 200 and len(body) < 60 * SHOWN_CHARS  # bounded: under 0.4 MB
    assert handed and max(handed) <= SHOWN_CHARS
    assert str(escape(big["instruction"][:SHOWN_CHARS])) in body and 'id="long"' in body and key not in body
    for part in ("instruction", "response", "improved_response"):
        assert f'href="/sample/{sid}/{part}.txt"' in body
    assert f"the first {SHOWN_CHARS:,} of {len(big['response']):,} characters" in body
    whole = client.get(f"/sample/{sid}/improved_response.txt", headers=here)
    text = whole.get_data(as_text=True)
    assert whole.status_code == 200 and whole.headers["Content-Type"].startswith("text/plain")
    assert key not in text and text.startswith(big["improved_response"][: -len(key)])  # the whole, the key masked
    record = client.get(f"/sample/{sid}/record.json", headers=here)
    assert json.loads(record.get_data(as_text=True))["meta"]["id"] == sid and key not in record.get_data(as_text=True)
    assert client.get(f"/sample/{sid}/response.txt", headers={"Host": "evil.example.com"}).status_code == 403
    assert client.get(f"/sample/{sid}/meta.txt", headers=here).status_code == 404
    assert client.get(f"/sample/{sid}/response", headers=here).status_code == 404
    assert client.get("/sample/no-such-id/response.txt", headers=here).status_code == 404
    assert client.get("/favicon.ico", headers=here).status_code == 204  # a plain-text page's browser asks for one
    short = client.get(f"/sample/{small['meta']['id']}", headers=here).get_data(as_text=True)
    assert 'id="long"' not in short and "the whole text" not in short


def test_the_viewer_s_access_log_holds_no_terminal_colour_codes(run):
    """Werkzeug colours its access log lines whatever stderr is: a newcomer's log file held `[33mGET /x ...[0m`."""
    import urllib.error
    import urllib.request

    from conftest import start_refed_server

    proc, url = start_refed_server(["view", str(run), "--port", "0"], r"(http://127\.0\.0\.1:\d+)/")
    try:
        try:
            urllib.request.urlopen(url + "/nonexistent", timeout=30)
        except urllib.error.HTTPError as err:
            assert err.code == 404
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert '"GET /nonexistent HTTP/1.1" 404' in err and "\x1b[" not in err, err


def test_the_filtered_view_names_the_run_it_shows(run, tmp_path):
    """`refed view RUN --filtered F` shows RUN's samples, each marked kept or removed by F: its first line names RUN
    (it named F, whose 10 samples it did not show, beside RUN's count of 30)."""
    from conftest import start_refed_server

    from refed_dspy.quality.filter_run import filter_run, parse_filter

    filtered = tmp_path / "kept"
    filter_run(run, filtered, [parse_filter("random_subset:k=10,seed=1")])
    proc, line = start_refed_server(
        ["view", str(run), "--filtered", str(filtered), "--port", "0"], r"^(serving .* at http://127\.0\.0\.1:\d+/)"
    )
    proc.terminate()
    proc.wait(timeout=30)
    assert line.startswith(f"serving {run} (30 samples, each marked kept or removed by {filtered}) at "), line


def test_a_command_on_a_run_given_a_folder_of_runs_names_them(tmp_path):
    """`refed report runs/cmp` (a compare dir) and `refed filter` of it said only "not a run directory (no config.toml);
    pass --config": they name the run dirs in it, as `refed view` and `refed status` do."""
    from cli_helpers import run_refed

    cmp = tmp_path / "cmp"
    for name in ("no_feedback", "refed"):
        (cmp / name).mkdir(parents=True)
        (cmp / name / "fingerprint.json").write_text("{}")  # what only `refed synthesize` writes
    for args in (["report", str(cmp)], ["filter", str(cmp), "--out", str(tmp_path / "f"), "--apply", "dedup"]):
        code, _, err = run_refed(*args)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert f"it holds 2 run dirs: {cmp / 'no_feedback'}, {cmp / 'refed'}; give one of them" in err, err
