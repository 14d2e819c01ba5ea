"""The viewer's pure parts and its index, without a browser (tests/test_browser.py drives the pages)."""

from __future__ import annotations

import json

from refed_dspy.diff import changed_share, word_diff
from refed_dspy.view.follow import Follower
from refed_dspy.view.index import Filters, Row


def test_word_diff_rebuilds_both_texts():
    before, after = "The cat sat\non the mat.", "The black cat sat\non a mat today."
    pieces = word_diff(before, after)
    assert "".join(t for op, t in pieces if op != "ins") == before
    assert "".join(t for op, t in pieces if op != "del") == after
    assert ("ins", " black") in pieces and ("del", "the") in pieces and ("ins", "a") in pieces
    assert changed_share("a b c", "a b c") == 0.0 and changed_share("a b", "c d") == 1.0
    assert word_diff("", "new") == [("ins", "new")]


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
