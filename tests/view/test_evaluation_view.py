"""`refed view` of an evaluation (`refed evaluate`'s folder, or the training folder holding it): its figures, each
instruction's two answers and outcome, the judge's verdict and reason in each order read the right way round, the
outcome filter and search, the whole texts masked, and nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
from urllib.parse import quote

from refed_dspy.training.evaluate import sample_id
from refed_dspy.view import View
from refed_dspy.view.app import create_app
from refed_dspy.view.index import is_viewable

HERE = {"Host": "127.0.0.1:8765"}
KEY = "sk-proj-" + "Zq7w" * 8
# id, instruction, the student's answer, the baseline's, the judge's verdicts (A is the student's answer in the first
# order, the baseline's in the second) or None (decided without the judge, or not judged)
CASES = [
    ("q/1&x", "Name a fruit.", "Splendid! An apple.", "An apple.", ["A", "B"]),  # the student both times: win
    ("q2", "Name a colour.", "Red.", "Splendid! Blue.", ["B", "A"]),  # the baseline both times: loss
    ("q3", "Name a city.", "Paris.", "Rome.", ["A", "A"]),  # the first shown both times: split
    ("q4", "Name a river.", "The Nile.", "The Nile!", ["tie", "tie"]),
    ("q5", "Name a planet.", "", "Mars.", None),  # an empty answer loses without the judge
    ("q6", "Name a metal.", "Iron.", f"Gold, and {KEY}.", None),  # not judged yet
]


def evaluation_folder(tmp_path):
    """A training folder holding an evaluation in its default place, written as `refed evaluate` writes it."""
    student = tmp_path / "student"
    out = student / "evaluation"
    out.mkdir(parents=True)
    (student / ".refed-dir").write_text("train\n")
    (out / ".refed-dir").write_text("evaluate\n")
    answers, judgments = [], []
    for key, text, mine, theirs, verdicts in CASES:
        answers += [
            {"id": key, "role": "student", "instruction": text, "answer": mine},
            {"id": key, "role": "baseline", "instruction": text, "answer": theirs},
        ]
        if verdicts:
            pair = {"verdicts": verdicts, "rationales": [f"{key} first order.", f"{key} second order."]}
            judgments.append({"sample_id": sample_id(key, text, mine, theirs), "pairwise": pair})
    # a judgment of an earlier answer of q4's student: not the answers shown, so not read for them
    judgments.append(
        {"sample_id": sample_id("q4", "Name a river.", "old", "The Nile!"), "pairwise": {"verdicts": ["A", "B"]}}
    )
    (out / "answers.jsonl").write_text("".join(json.dumps(r) + "\n" for r in answers) + '{"id": "torn9", "ro')
    (out / "judgments.jsonl").write_text("".join(json.dumps(r) + "\n" for r in judgments))
    figures = {
        "student": str(student), "baseline": "untuned smollm2", "eval_set": "eval.jsonl", "instructions": 6,
        "pairs": 5, "decisive": 8, "ties": 2, "wins": 3, "win_rate": 0.375, "interval": [0.1, 0.7],
        "lc_win_rate": 0.4, "lc_note": "", "verdict": "the student won 3 of 8 decisive judgments", "judge": "j",
        "judge_calls": 8, "cost_usd": 0.001, "status": "complete", "answers": str(out / "answers.jsonl"),
    }  # fmt: skip
    (out / "evaluation.json").write_text(json.dumps(figures))
    return student, out


def test_an_evaluation_shows_its_figures_and_each_instruction_s_outcome(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    student, out = evaluation_folder(tmp_path)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert is_viewable(student) and is_viewable(out)
    view = View(student)
    assert view.kind == "evaluation" and view.path == out
    client = create_app(view).test_client()
    page = client.get("/", headers=HERE).get_data(as_text=True)
    assert "the student won 3 of 8 decisive judgments" in page and "37.5% (95% interval 10.0-70.0%)" in page
    assert "win 1, loss 2, tie 1, split 1, unjudged 1" in page  # q5's empty answer is a loss without the judge
    assert page.count('class="row"') == 6 and "torn9" not in page  # the torn line is not an answer
    assert KEY not in page and "Gold, and" in page
    only = client.get("/?outcome=loss", headers=HERE).get_data(as_text=True)
    assert only.count('class="row"') == 2 and "Name a colour." in only and "Name a planet." in only
    found = client.get("/?q=splendid", headers=HERE).get_data(as_text=True)
    assert found.count('class="row"') == 2  # the student's answer of q/1&x, the baseline's of q2
    both = client.get("/?q=apple+splendid", headers=HERE).get_data(as_text=True)  # every word, in any order
    assert both.count('class="row"') == 1 and "Name a fruit." in both
    assert client.get("/?outcome=best", headers=HERE).status_code == 400
    assert "Evaluation" in page and "Rejects" not in page
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # read-only: the torn line is left as it is


def test_an_instruction_s_page_reads_each_order_the_right_way_round(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    _, out = evaluation_folder(tmp_path)
    client = create_app(View(out)).test_client()
    listed = client.get("/", headers=HERE).get_data(as_text=True)
    link = f"/answer?id={quote('q/1&x')}"
    assert f'href="{link}"' in listed
    win = client.get(link, headers=HERE).get_data(as_text=True)
    assert "Splendid! An apple." in win and "An apple." in win and 'class="badge win">win' in win
    assert win.count('<span class="badge win">student</span>') == 2 and "q/1&amp;x first order." in win
    split = client.get("/answer?id=q3", headers=HERE).get_data(as_text=True)
    assert 'shown first: <span class="badge win">student</span>' in split
    assert 'shown first: <span class="badge loss">baseline</span>' in split and 'class="badge split">split' in split
    empty = client.get("/answer?id=q5", headers=HERE).get_data(as_text=True)
    assert "decided without the judge" in empty and 'class="badge loss">loss' in empty
    tie = client.get("/answer?id=q4", headers=HERE).get_data(as_text=True)
    assert (
        tie.count('shown first: <span class="badge tie">tie</span>') == 2
    )  # its own judgment, not the earlier answer's
    assert "not judged yet" in client.get("/answer?id=q6", headers=HERE).get_data(as_text=True)
    whole = client.get("/answer.txt?id=q6&part=baseline", headers=HERE)
    assert (
        whole.status_code == 200
        and whole.get_data(as_text=True).startswith("Gold, and ")
        and KEY not in whole.get_data(as_text=True)
    )
    assert client.get("/answer?id=nope", headers=HERE).status_code == 404
    assert client.get("/answer.txt?id=q6&part=judge", headers=HERE).status_code == 404
    assert client.get("/answer?id=q3", headers={"Host": "evil.example.com"}).status_code == 403


def test_an_evaluation_without_figures_yet_shows_its_answers_and_a_run_dir_has_no_answer_pages(tmp_path):
    _, out = evaluation_folder(tmp_path)
    (out / "evaluation.json").unlink()
    (out / "judgments.jsonl").unlink()
    page = create_app(View(out)).test_client().get("/", headers=HERE).get_data(as_text=True)
    assert "not judged yet" in page and "unjudged 5" in page  # q5's empty answer is decided without the judge
    run = tmp_path / "run"
    run.mkdir()
    (run / "samples.jsonl").write_text("")
    assert create_app(View(run)).test_client().get("/answer?id=q3", headers=HERE).status_code == 404


def test_refed_view_of_a_folder_with_no_evaluation_names_what_it_shows(tmp_path):
    (tmp_path / "student").mkdir()
    (tmp_path / "student" / ".refed-dir").write_text("train\n")
    proc = subprocess.run(
        [sys.executable, "-m", "refed_dspy.cli", "view", str(tmp_path / "student"), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "an evaluation" in proc.stderr and "Traceback" not in proc.stderr


def test_an_id_whose_instruction_changed_shows_the_answers_to_its_newest_text(tmp_path):
    """As the evaluation keeps them: each side's last answer, counted only where it answers the id's newest text."""
    from refed_dspy.view.evaluation import answered_rows

    out = tmp_path / "ev"
    out.mkdir()
    (out / ".refed-dir").write_text("evaluate\n")
    lines = [("T1", "student", "s1"), ("T1", "baseline", "b1"), ("T2", "student", "s2"), ("T1", "student", "s1b")]
    rows = [{"id": "q", "role": role, "instruction": text, "answer": said} for text, role, said in lines]
    (out / "answers.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (row,) = answered_rows(out)
    assert (row.instruction, row.student, row.baseline) == ("T1", "s1b", "b1")
    rows.append({"id": "q", "role": "baseline", "instruction": "T3", "answer": "b3"})
    (out / "answers.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (row,) = answered_rows(out)
    assert (row.instruction, row.student, row.baseline, row.outcome) == ("T3", "", "b3", "unjudged")


def test_a_run_dir_holding_a_folder_named_evaluation_is_still_a_run(tmp_path):
    run = tmp_path / "run"
    (run / "evaluation").mkdir(parents=True)
    (run / ".refed-dir").write_text("run\n")
    (run / "samples.jsonl").write_text("")
    (run / "evaluation" / ".refed-dir").write_text("evaluate\n")
    assert View(run).kind == "run" and View(run / "evaluation").kind == "evaluation"
