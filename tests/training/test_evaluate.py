"""`refed evaluate` without a model: the answers a folder holds already (answers.jsonl), so no student loads, and the
loopback judge with a taste (it prefers the answer holding a phrase), so the figures carry a real signal: the judging
on the launch path (its ledger, its cap, the server's count), the orientation of the two orders, the win rate, its
interval, the length-controlled rate, and the one-line errors. The real students' chain is in test_train_tier.py."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from loopback_server import read_log

from refed_dspy.config import load_config
from refed_dspy.errors import ConfigError, FinishedShort, RunAborted, SeedError
from refed_dspy.training import evaluate_students
from refed_dspy.training.evaluate import (
    ANSWERS,
    MIN_DECISIVE,
    PACKAGED_SET,
    check_same_set,
    interval,
    judged_samples,
    length_controlled,
    outcomes,
    read_instructions,
    side_of,
    win_rate,
)
from refed_dspy.view.status import run_status, status_text

TASTE = "splendid"


def trained(folder, student="smollm2"):
    """A folder as `refed train` leaves it (its summary and an adapter folder), with no weights in it."""
    (folder / "adapter").mkdir(parents=True)
    summary = {
        "student": student, "source": "run", "samples": 10, "held_out": 1, "steps": 5, "losses": [2.0, 1.0],
        "loss_steps": [1, 5], "held_out_loss": 1.1, "wall_s": 3.0, "adapter": str(folder / "adapter"),
        "device": "cpu", "dtype": "float32",
    }  # fmt: skip
    (folder / "train_summary.json").write_text(json.dumps(summary))
    return folder


def setup(tmp_path, n=8, student_says=lambda i: f"Splendid! Answer {i}.", baseline_says=lambda i: f"Answer {i}."):
    """Two trained folders, an evaluation set of `n` instructions, and an evaluation folder holding both answers."""
    student, baseline = trained(tmp_path / "a"), trained(tmp_path / "b")
    eval_set = tmp_path / "eval.jsonl"
    eval_set.write_text("".join(json.dumps({"id": f"q{i}", "instruction": f"Question {i}?"}) + "\n" for i in range(n)))
    out = tmp_path / "ev"
    out.mkdir()
    (out / ".refed-dir").write_text("evaluate\n")  # as an evaluation stopped after its answers leaves it
    rows = [
        {"id": f"q{i}", "role": role, "instruction": f"Question {i}?", "answer": say(i)}
        for i in range(n)
        for role, say in (("student", student_says), ("baseline", baseline_says))
    ]
    (out / ANSWERS).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return student, baseline, eval_set, out


def settled_log(server, settle_s: float = 1.5) -> list[dict]:
    """The server's log once it holds a request and `settle_s` have passed after (a request is logged after its
    answer leaves, and one asked again would be sent within a second of the first's end)."""
    deadline = time.monotonic() + 30
    while not read_log(server.cfg.log_path) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(settle_s)
    return read_log(server.cfg.log_path)


def judge_overrides(server, *extra):
    return [f"judge.api_base='{server.api_base}'", "judge.api_key_env=''", "run.progress=false", *extra]


def test_the_judge_s_taste_decides_and_every_judge_call_is_the_server_s(server_factory, tmp_path):
    server = server_factory(prefers=TASTE)
    student, baseline, eval_set, out = setup(tmp_path)
    config = load_config(None, judge_overrides(server))
    result = evaluate_students(student, eval_set, out, config, baseline=baseline)
    assert (result.pairs, result.decisive, result.ties, result.wins, result.win_rate) == (8, 16, 0, 16, 1.0)
    assert result.interval == [1.0, 1.0] and result.status == "complete"
    longer = "the student's answers are longer than"  # than the baseline's: length and student are one here
    assert result.lc_win_rate is None and result.lc_note.startswith(longer)
    assert result.judge_calls == len(read_log(server.cfg.log_path)) == 16
    assert "won 16 of 16 decisive judgments" in result.verdict and "better than the baseline" in result.verdict
    assert json.loads((out / "evaluation.json").read_text()) == result.to_json()
    assert (out / "judge_ledger.jsonl").exists() and (out / ".refed-dir").read_text().strip() == "evaluate"
    # the same again: nothing judged anew, the same figures
    again = evaluate_students(student, eval_set, out, config, baseline=baseline)
    assert again.win_rate == 1.0 and again.judge_calls == 16 == len(read_log(server.cfg.log_path))
    # the sides swapped: the baseline's answers hold the phrase now, and it wins every judgment
    _, _, _, swapped = setup(
        tmp_path / "s", student_says=lambda i: f"Answer {i}.", baseline_says=lambda i: f"Splendid {i}"
    )
    flipped = evaluate_students(student, eval_set, swapped, config, baseline=baseline)
    assert (flipped.wins, flipped.decisive, flipped.win_rate) == (0, 16, 0.0) and "worse than" in flipped.verdict


def test_the_cap_stops_the_judging_and_the_next_run_judges_only_the_rest(server_factory, tmp_path):
    server = server_factory(prefers=TASTE)
    student, baseline, eval_set, out = setup(tmp_path)
    capped = load_config(None, judge_overrides(server, "evaluate.max_calls=6"))
    result = evaluate_students(student, eval_set, out, capped, baseline=baseline)
    # each instruction's worst case is 4 calls (two orders, each with a repair): after 4 calls the next could break 6
    assert result.status == "budget" and result.judge_calls == 4 == len(read_log(server.cfg.log_path))
    assert (result.pairs, result.decisive) == (2, 4) and result.verdict.startswith("no verdict")
    rest = evaluate_students(student, eval_set, out, load_config(None, judge_overrides(server)), baseline=baseline)
    assert (
        rest.status == "complete" and rest.pairs == 8 and rest.judge_calls == 16 == len(read_log(server.cfg.log_path))
    )


def test_too_few_decisive_judgments_are_said_not_hidden(server_factory, tmp_path):
    server = server_factory(prefers=TASTE)
    student, baseline, eval_set, out = setup(tmp_path, n=2)
    result = evaluate_students(student, eval_set, out, load_config(None, judge_overrides(server)), baseline=baseline)
    assert result.decisive == 4 < MIN_DECISIVE and result.win_rate == 1.0
    assert result.verdict.startswith("no verdict: 4 decisive judgments of 4") and result.lc_win_rate is None
    assert result.lc_note == "4 decisive judgments, 6 needed"


def test_the_two_orders_are_read_each_the_right_way_round():
    answers = {("q1", "student"): "mine", ("q1", "baseline"): "theirs", ("q2", "student"): "", ("q2", "baseline"): "x"}
    samples = judged_samples([("q1", "Q?"), ("q2", "R?")], answers)
    assert samples[0]["improved_response"] == "mine" and samples[0]["response"] == "theirs"
    assert [s["meta"]["id"].split("#")[0] for s in samples] == ["q1"]  # an empty answer is not sent to the judge
    # the pairwise judge shows the improved (the student's) first in the first order, second in the second
    rows = [
        {"sample_id": "a", "pairwise": {"verdicts": ["A", "B"]}},  # the student both times
        {"sample_id": "b", "pairwise": {"verdicts": ["B", "A"]}},  # the baseline both times
        {"sample_id": "c", "pairwise": {"verdicts": ["A", "A"]}},  # the first shown both times: position bias
        {"sample_id": "d", "pairwise": {"verdicts": ["tie", "B"]}},
        {"sample_id": "e", "pointwise": {"overall": 5}},  # no pairwise judgment: not counted
    ]
    assert outcomes(rows) == {"a": [1, 1], "b": [-1, -1], "c": [1, -1], "d": [0, 1]}
    assert win_rate(list(outcomes(rows).values())) == 4 / 7


def test_the_interval_comes_from_resampling_instructions():
    judged = [[1, 1]] * 6 + [[-1, -1]] * 2 + [[0, 0]] * 2
    low, high = interval(judged, 2000, seed=0)
    assert low < 0.75 < high and low > 0.4 and high <= 1.0
    assert interval([[0, 0]], 100, 0) is None


def test_the_length_controlled_rate_takes_length_out_and_stays_finite():
    # wins that come with longer answers and losses with shorter: most of the win is length's
    biased = [(1, 300)] * 8 + [(-1, -300)] * 2 + [(1, -300)] * 1
    lc, _ = length_controlled(biased)
    raw = win_rate([[v] for v, _ in biased])  # 9 of 11
    assert lc is not None and 0.5 < lc < raw - 0.02
    # wins whatever the length: the rate stays high, finite
    steady, note = length_controlled([(1, 40)] * 8 + [(1, -40)] * 8)
    assert 0.95 < steady < 1 and note == ""
    # as likely to win longer as shorter: the rate itself
    even, _ = length_controlled([(1, 30)] * 6 + [(-1, 30)] * 2 + [(1, -30)] * 6 + [(-1, -30)] * 2)
    assert abs(even - 0.75) < 0.03
    # longer in every judgment (or never different): length and student cannot be told apart
    assert length_controlled([(1, 20)] * 16) == (
        None,
        "the student's answers are longer than the baseline's in every decisive judgment: length and student cannot be "
        "told apart",
    )
    even_length = length_controlled([(1, 0)] * 9 + [(-1, 0)] * 3)
    assert even_length[0] is None and even_length[1].startswith("the student's answers are as long as the baseline's")
    assert length_controlled([(1, -20)] * 6)[1].startswith("the student's answers are shorter than the baseline's")
    assert length_controlled([(1, 5)] * 5) == (None, "5 decisive judgments, 6 needed")


def test_an_evaluation_set_it_cannot_use_is_one_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "Fine?"}\n{"question": "no instruction field"}\n')
    with pytest.raises(SeedError, match=r"bad.jsonl:2: no instruction"):
        read_instructions(bad)
    bad.write_text('{"id": 1, "prompt": "A?"}\n{"id": 1, "text": "B?"}\n')
    with pytest.raises(SeedError, match="the id '1' is there twice"):
        read_instructions(bad)
    with pytest.raises(SeedError, match="cannot read the evaluation set"):
        read_instructions(tmp_path / "missing.jsonl")
    packaged = read_instructions(PACKAGED_SET)
    assert len(packaged) == 40 == len({text for _, text in packaged})


def test_a_folder_without_a_finished_training_or_with_another_evaluation_is_refused(server_factory, tmp_path):
    server = server_factory(prefers=TASTE)
    student, baseline, eval_set, out = setup(tmp_path)
    config = load_config(None, judge_overrides(server))
    with pytest.raises(ConfigError, match=r"--baseline .* holds no finished training"):
        evaluate_students(student, eval_set, out, config, baseline=tmp_path / "nothing")
    evaluate_students(student, eval_set, out, config, baseline=baseline)
    with pytest.raises(ConfigError, match=r"max_new_tokens: 256 -> 64"):
        evaluate_students(
            student,
            eval_set,
            out,
            load_config(None, judge_overrides(server, "evaluate.max_new_tokens=64")),
            baseline=baseline,
        )
    p = subprocess.run(
        [sys.executable, "-m", "refed_dspy.cli", "evaluate", "--student", str(tmp_path / "nothing")],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr


def test_a_judge_whose_replies_cannot_be_used_is_said_so_not_to_be_asked_again(server_factory, tmp_path):
    """Every judge reply unusable (for good: the same request gets the same reply): the evaluation ends partial, exit 1,
    and its line says why and what judges them (another judge model with --fresh), not that the same command would."""
    server = server_factory(sticky_malformed=1.0)
    student, baseline, eval_set, out = setup(tmp_path, n=2)
    args = ["--student", str(student), "--baseline", str(baseline), "--eval", str(eval_set), "--out", str(out)]
    sets = [a for o in judge_overrides(server) for a in ("--set", o)]
    p = subprocess.run(
        [sys.executable, "-m", "refed_dspy.cli", "evaluate", *args, *sets], capture_output=True, text=True, timeout=300
    )
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert f"could not be used ({out / 'judge_rejects.jsonl'} says why): --fresh with another" in p.stdout, p.stdout
    assert "judges the rest" not in p.stdout


def test_an_empty_answer_loses_without_a_call_and_two_are_ties(server_factory, tmp_path):
    server = server_factory(prefers=TASTE)
    says = {0: "", 1: "", 2: "Splendid two.", 3: "Splendid three."}
    theirs = {0: "Plain zero.", 1: "", 2: "Plain two.", 3: "Plain three."}
    student, baseline, eval_set, out = setup(tmp_path, n=4, student_says=says.get, baseline_says=theirs.get)
    result = evaluate_students(student, eval_set, out, load_config(None, judge_overrides(server)), baseline=baseline)
    assert (result.pairs, result.wins, result.decisive, result.ties) == (4, 4, 6, 2)  # q0 lost twice, q1 two ties
    assert result.judge_calls == 4 == len(read_log(server.cfg.log_path))  # q2 and q3 only, in both orders


def test_a_training_folder_that_moved_is_still_a_student(tmp_path):
    moved = trained(tmp_path / "a").rename(tmp_path / "elsewhere")
    side = side_of(moved, "student")
    assert side.adapter == str(moved / "adapter") and side.model == "smollm2"


def test_a_device_torch_does_not_have_here_is_one_line():
    torch = pytest.importorskip("torch")
    from refed_dspy.training.student import usable_device

    assert usable_device(torch, "cpu") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="torch sees 0 CUDA device"):
            usable_device(torch, "cuda")
    with pytest.raises(ConfigError, match="expected cpu, cuda, cuda:N or mps"):
        usable_device(torch, "tpu")


def test_students_a_server_serves_answer_there_and_the_judge_decides(server_factory, tmp_path, monkeypatch):
    """[evaluate] server: each answer is asked of the server under the side's name (the loopback server answers
    `stu` with the judge's phrase and `base` without), no model loads here, and a second run asks nothing again."""
    from refed_dspy.training.student import Student

    def no_model_here(self):
        raise AssertionError("a student was loaded in this process")

    monkeypatch.setattr(Student, "load", no_model_here)
    served = server_factory(says={"stu": "Splendid!", "base": ""})
    judge = server_factory(prefers=TASTE)
    student, baseline, eval_set, _ = setup(tmp_path)
    out = tmp_path / "served"
    names = [f"evaluate.server='{served.api_base}'", "evaluate.student_model='stu'", "evaluate.baseline_model='base'"]
    config = load_config(None, judge_overrides(judge, *names, "evaluate.batch_size=3"))
    result = evaluate_students(student, eval_set, out, config, baseline=baseline)
    answers = [json.loads(x) for x in (out / ANSWERS).read_text().splitlines()]
    assert len(answers) == 16 and all(
        a["answer"].startswith("Splendid!") == (a["role"] == "student") and len(a["answer"].split()) > 3
        for a in answers
    )
    asked = read_log(served.cfg.log_path)
    checks = [
        e for e in asked if e["settings"].get("max_completion_tokens") == 1
    ]  # each name asked for one token first
    assert len(asked) == 16 + 2 and sorted(e["model"] for e in checks) == ["base", "stu"]
    assert (result.decisive, result.wins, result.win_rate) == (16, 16, 1.0)
    assert result.judge_calls == 16 == len(read_log(judge.cfg.log_path))
    again = evaluate_students(student, eval_set, out, config, baseline=baseline)
    assert again.win_rate == 1.0 and len(read_log(served.cfg.log_path)) == 18  # nothing asked again
    # another name served for the student is another evaluation: the folder refuses it in one line
    other = load_config(None, judge_overrides(judge, *names[:1], "evaluate.student_model='v2'", names[2]))
    with pytest.raises(ConfigError, match="served"):
        evaluate_students(student, eval_set, out, other, baseline=baseline)


PRICED = ['prices."openai/stu".input_usd_per_mtok=100', 'prices."openai/stu".output_usd_per_mtok=100']
PRICED += ['prices."openai/base".input_usd_per_mtok=100', 'prices."openai/base".output_usd_per_mtok=100']


def test_a_billed_students_server_is_held_to_the_evaluation_s_caps(server_factory, tmp_path):
    """The answers of a server that bills them (a fine-tune on a provider's API; priced here by [prices]) were asked
    outside every cap: an attacker's evaluation at max_calls = 2 paid 22 answers and reported 0 calls. They are now
    counted with the judge's, across re-runs: under max_calls = 10 the answering stops at 10 (exit 1, the answers made
    kept), running it again sends nothing more, and a raised cap leaves the judge only what the answers did not use;
    the evaluation says what the students' server cost."""
    served = server_factory(says={"stu": "Splendid!", "base": ""})
    judge = server_factory(prefers=TASTE)
    student, baseline, eval_set, _ = setup(tmp_path)
    out = tmp_path / "billed"
    names = [f"evaluate.server='{served.api_base}'", "evaluate.student_model='stu'", "evaluate.baseline_model='base'"]
    capped = load_config(None, judge_overrides(judge, *names, *PRICED, "evaluate.max_calls=10"))
    for _ in range(2):
        with pytest.raises(FinishedShort, match="evaluate.max_calls"):
            evaluate_students(student, eval_set, out, capped, baseline=baseline)
        spent = json.loads((out / "spent.json").read_text())["parts"]["answering"]
        assert len(settled_log(served)) == spent["calls"] <= 10 and not read_log(judge.cfg.log_path)
        assert run_status(out).calls == spent["calls"]  # `refed status` counts what the answers paid
    kept = [json.loads(x)["role"] for x in (out / ANSWERS).read_text().splitlines()]
    before, sides = spent["calls"], sum(kept.count(role) < 8 for role in ("student", "baseline"))
    assert 0 < len(kept) < 16
    raised = load_config(None, judge_overrides(judge, *names, *PRICED, "evaluate.max_calls=30"))
    result = evaluate_students(student, eval_set, out, raised, baseline=baseline)
    answered = len(settled_log(served))
    assert answered == before + sides + 16 - len(kept)  # the names of the sides left checked again, then asked
    assert result.answer_calls == answered and result.answer_cost_usd > 0
    assert 0 < result.judge_calls == len(read_log(judge.cfg.log_path)) <= 30 - answered
    assert result.status == "budget"


def test_the_answers_of_a_longer_set_count_what_the_judge_paid_before(server_factory, tmp_path):
    """A reviewer's case: an evaluation of 2 instructions under max_calls = 12 (6 answered, 4 judged), run again on 4
    of the same set: its answers were held to 12 less their own earlier calls only, and 16 were billed. What the
    judge paid before counts too: the server and the judge answer 12 calls at most in all."""
    served = server_factory(says={"stu": "Splendid!", "base": ""})
    judge = server_factory(prefers=TASTE)
    student, baseline, eval_set, _ = setup(tmp_path, n=4)
    out = tmp_path / "longer"
    names = [f"evaluate.server='{served.api_base}'", "evaluate.student_model='stu'", "evaluate.baseline_model='base'"]
    first = load_config(None, judge_overrides(judge, *names, *PRICED, "evaluate.max_calls=12", "evaluate.limit=2"))
    evaluate_students(student, eval_set, out, first, baseline=baseline)
    assert len(settled_log(served)) == 6 and len(read_log(judge.cfg.log_path)) == 4
    again = load_config(None, judge_overrides(judge, *names, *PRICED, "evaluate.max_calls=12"))
    with pytest.raises(FinishedShort, match="evaluate.max_calls"):
        evaluate_students(student, eval_set, out, again, baseline=baseline)
    assert len(settled_log(served)) + len(read_log(judge.cfg.log_path)) <= 12


def test_a_killed_answering_counts_what_its_calls_in_flight_may_have_cost(tmp_path):
    """A kill leaves the answers in flight at the most they can cost (`interrupted_cost_usd` in spent.json): a
    reviewer's rerun held itself to the cap less what was answered alone and billed $0.0104 of $0.01. What is left
    counts that bound too."""
    from refed_dspy.config import Config
    from refed_dspy.training.served import left

    config = load_config(None, ["evaluate.max_cost_usd=1", "evaluate.max_calls=10"])
    assert left(config, {"calls": 2, "cost_usd": 0.0, "interrupted_cost_usd": 0.6}) == (8, pytest.approx(0.4))
    assert left(config, {"calls": 12, "cost_usd": 1.5}, None) == (0, 0.0)
    assert left(Config(), {"calls": 3, "cost_usd": 1.0}) == (None, None)


def test_an_unpriced_model_of_a_public_students_server_is_refused_under_a_cost_cap(server_factory, tmp_path):
    """A students' server off this machine's network bills what it answers: with max_cost_usd and no price for its
    model, one line naming the fields that price it, before any request (one's own server is taken as free)."""
    student, baseline, eval_set, _ = setup(tmp_path)
    names = ["evaluate.server='https://api.example.com/v1'", "evaluate.student_model='stu'"]
    names += ["evaluate.baseline_model='base'", "evaluate.max_cost_usd=1"]
    config = load_config(None, judge_overrides(server_factory(), *names))
    with pytest.raises(ConfigError, match=r'\[prices\."openai/stu"\]'):
        evaluate_students(student, eval_set, tmp_path / "public", config, baseline=baseline)


def test_a_folder_of_another_set_is_refused_and_a_limit_asks_fewer(server_factory, tmp_path):
    """A folder holding answers to another set is refused before any answer or judgment (it added them, and its
    evaluation.json then described the last set only); a limit asks fewer of the same set, and the viewer lists what
    the figures cover (it listed every instruction answered: 'won 6 of 6 over 3' beside 8 rows)."""
    from refed_dspy.view.evaluation import answered_rows

    server = server_factory(prefers=TASTE)
    student, baseline, eval_set, out = setup(tmp_path)
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps({"id": f"r{i}", "instruction": f"Other {i}?"}) + "\n" for i in range(3)))
    config = load_config(None, judge_overrides(server))
    with pytest.raises(ConfigError, match=r"holds answers to another set than .*other.jsonl \(8 of its instructions"):
        evaluate_students(student, other, out, config, baseline=baseline)
    assert not read_log(server.cfg.log_path)
    limited = load_config(None, judge_overrides(server, "evaluate.limit=3"))
    fewer = evaluate_students(student, eval_set, out, limited, baseline=baseline)
    assert fewer.pairs == 3 and fewer.ids == ["q0", "q1", "q2"]
    assert [row.id for row in answered_rows(out)] == ["q0", "q1", "q2"]
    whole = evaluate_students(student, eval_set, out, config, baseline=baseline)  # the rest of the set: more answers
    assert whole.pairs == 8 and len(answered_rows(out)) == 8


def test_sets_without_ids_are_told_apart_by_their_texts(tmp_path):
    """A set without ids numbers its lines (line1, line2, ...), so any two are nested by id: the texts tell them
    apart. An instruction edited is asked anew; more lines of the same set add answers."""
    folder = tmp_path / "ev"
    folder.mkdir()
    rows = [{"id": f"line{i}", "role": "student", "instruction": f"Question {i}?", "answer": "A."} for i in (1, 2, 3)]
    (folder / ANSWERS).write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(
        ConfigError,
        match=r"another set than other.jsonl \(1 of its instructions are not in it, and of the 2 ids both hold, 0 read",
    ):
        check_same_set(folder, [("line1", "Something else?"), ("line2", "Another thing?")], Path("other.jsonl"))
    check_same_set(folder, [("line1", "Question 1?"), ("line2", "Question 2, edited?")], Path("same.jsonl"))
    check_same_set(folder, [(f"line{i}", f"Question {i}?") for i in range(1, 6)], Path("more.jsonl"))


def test_a_students_server_that_is_down_or_refuses_is_one_line(server_factory, tmp_path):
    student, baseline, eval_set, _ = setup(tmp_path)
    judge = server_factory(prefers=TASTE)
    names = ["evaluate.student_model='stu'", "evaluate.baseline_model='base'"]
    down = load_config(None, judge_overrides(judge, "evaluate.server='http://127.0.0.1:9/v1'", *names))
    with pytest.raises(RunAborted, match=r"server http://127.0.0.1:9/v1 did not answer 'openai/stu': nothing answered"):
        evaluate_students(student, eval_set, tmp_path / "down", down, baseline=baseline)
    busy = server_factory(fail_status=503)
    overloaded = load_config(None, judge_overrides(judge, f"evaluate.server='{busy.api_base}'", *names))
    with pytest.raises(RunAborted, match="did not answer"):  # resumable: exit 3, not the config's fault
        evaluate_students(student, eval_set, tmp_path / "busy", overloaded, baseline=baseline)
    gateway = server_factory(fail_status=504)  # a proxy that timed out before the server: not asked again either
    proxied = load_config(None, judge_overrides(judge, f"evaluate.server='{gateway.api_base}'", *names))
    with pytest.raises(RunAborted, match="did not answer"):
        evaluate_students(student, eval_set, tmp_path / "proxied", proxied, baseline=baseline)
    assert len(settled_log(gateway)) == 1 < len(settled_log(busy))  # 503: asked 4 times
    refusing = server_factory(fail_status=404)
    gone = load_config(None, judge_overrides(judge, f"evaluate.server='{refusing.api_base}'", *names))
    with pytest.raises(ConfigError, match=r"refused 'openai/stu'"):
        evaluate_students(student, eval_set, tmp_path / "gone", gone, baseline=baseline)
    slow = server_factory(says={"stu": "Splendid!", "base": ""}, latency_s=1.0)
    hurried = load_config(
        None, judge_overrides(judge, f"evaluate.server='{slow.api_base}'", *names, "evaluate.timeout=0.2")
    )
    with pytest.raises(RunAborted, match=r"did not answer 'openai/stu' within evaluate.timeout = 0.2 s"):
        evaluate_students(student, eval_set, tmp_path / "slow", hurried, baseline=baseline)
    assert len(settled_log(slow)) == 1  # the one-token check, not asked again (it would queue behind itself)
    assert not read_log(judge.cfg.log_path)  # no judging of answers never made
    # a name the server does not serve, the baseline's: refused before the student's answers are kept, so the folder
    # takes the name mended
    serving = server_factory(says={"stu": "Splendid!", "base": ""})
    at = f"evaluate.server='{serving.api_base}'"
    typo = load_config(None, judge_overrides(judge, at, names[0], "evaluate.baseline_model='bsae'"))
    with pytest.raises(ConfigError, match=r"refused 'openai/bsae': the provider does not serve this model"):
        evaluate_students(student, eval_set, tmp_path / "typo", typo, baseline=baseline)
    assert not (tmp_path / "typo" / ANSWERS).exists() and not (tmp_path / "typo" / "evaluate_plan.json").exists()
    mended = evaluate_students(
        student, eval_set, tmp_path / "typo", load_config(None, judge_overrides(judge, at, *names)), baseline=baseline
    )
    assert mended.status == "complete" and mended.pairs == 8
    with pytest.raises(ConfigError, match="evaluate.baseline_model: the names"):
        load_config(None, ["evaluate.server='http://127.0.0.1:9/v1'", "evaluate.student_model='stu'"])
    with pytest.raises(ConfigError, match=r"http://localhost:8000\?"):
        load_config(None, ["evaluate.server='localhost:8000'", *names])
    assert load_config(None, ["evaluate.server=''"]).evaluate.server is None


STOPPED_WHILE_ASKING = """
import os, signal, socket, threading, time
from refed_dspy.config.training import EvaluateConfig
from refed_dspy.config import Config
from refed_dspy.ledger.budget import CallBudget
from refed_dspy.training import served

held, listening = [], socket.create_server(("127.0.0.1", 0))
threading.Thread(target=lambda: [held.append(listening.accept()[0]) for _ in range(2)], daemon=True).start()
ev = EvaluateConfig(server=f"http://127.0.0.1:{listening.getsockname()[1]}/v1", student_model="s", baseline_model="b",
                    timeout=20)
lm = served.served_lm(Config().model_copy(update={"evaluate": ev}), "student", CallBudget())

def stop_once_both_wait():
    while len(held) < 2:
        time.sleep(0.05)
    os.kill(os.getpid(), signal.SIGINT)

threading.Thread(target=stop_once_both_wait, daemon=True).start()
try:
    served.served_answers(lm, ["a", "b"], ev)
except KeyboardInterrupt:
    for conn in held:  # a request the client still waits on: its connection open (its bytes read, then nothing)
        conn.setblocking(False)
        try:
            while conn.recv(65536):
                pass
            print("closed")
        except BlockingIOError:
            print("open")
"""


def test_a_stop_while_a_server_writes_does_not_wait_for_it(tmp_path):
    """Ctrl-C while the students' server holds every request: the command stops at once, each request left open (it
    waited for each to time out, evaluate.timeout, 600 s by default, before it stopped)."""
    p = subprocess.run([sys.executable, "-c", STOPPED_WHILE_ASKING], capture_output=True, text=True, timeout=120)
    assert p.stdout.split() == ["open", "open"], (p.stdout, p.stderr[-2000:])


def test_a_served_answer_cut_off_at_max_new_tokens_is_kept_as_written(server_factory, tmp_path):
    served = server_factory(says={"stu": "Splendid!", "base": ""}, sticky_length=1.0)
    judge = server_factory(prefers=TASTE)
    student, baseline, eval_set, _ = setup(tmp_path, n=3)
    names = [f"evaluate.server='{served.api_base}'", "evaluate.student_model='stu'", "evaluate.baseline_model='base'"]
    result = evaluate_students(
        student, eval_set, tmp_path / "cut", load_config(None, judge_overrides(judge, *names)), baseline=baseline
    )
    answers = [json.loads(x) for x in (tmp_path / "cut" / ANSWERS).read_text().splitlines()]
    assert len(answers) == 6 and all(a["answer"] for a in answers) and result.status == "complete"
    assert len(read_log(served.cfg.log_path)) == 6 + 2  # each asked once (and each name checked): a cut-off answer


def test_compare_train_s_judge_caps_hold_for_the_whole_table(server_factory, tmp_path):
    """`refed compare --train` evaluates each method's student under what [evaluate]'s caps leave after the other
    methods' evaluations (their judge ledgers): the table's judging together stays within them, and a method stopped
    by them is said."""
    from refed_dspy.experiments.compare import evaluation_columns, judging_left, unfinished_students

    server = server_factory(prefers=TASTE)
    students = tmp_path / "cmp" / "students"
    students.mkdir(parents=True)
    rows = []
    for method in ("refed", "sample_level", "no_feedback"):  # as compare --train lays them out, answered already
        student, baseline, eval_set, answered = setup(tmp_path / method)
        if method != "no_feedback":
            answered.rename(student / "evaluation")
        rows.append({"method": method, "student": str(student.rename(students / method))})
    baseline = students / "no_feedback"
    overrides = [f"run.dir='{tmp_path / 'cmp'}'", f"evaluate.eval_set='{eval_set}'"]
    evaluate_students(rows[0]["student"], eval_set, None, load_config(None, judge_overrides(server)), baseline=baseline)
    capped = load_config(None, judge_overrides(server, *overrides, "evaluate.max_calls=22", "evaluate.max_cost_usd=1"))
    left = judging_left(capped, rows, "sample_level")
    assert left.evaluate.max_calls == 22 - 16 and 0.99 < left.evaluate.max_cost_usd < 1
    assert judging_left(capped, rows, "refed").evaluate.max_calls == 22  # its own ledger counts within its own run
    # an invocation that does not name refed (run by an earlier one) still counts what its evaluation spent
    assert judging_left(capped, rows[1:], "sample_level").evaluate.max_calls == 22 - 16
    assert judging_left(capped, rows[1:], "sample_level", fresh=True).evaluate.max_calls == 22 - 16
    columns = evaluation_columns(capped, rows, rows[1], None, "error", False)
    assert columns["student_status"] == "budget" and columns["student_judge_calls"] == 4  # 4 at worst: one fits in 6
    assert len(read_log(server.cfg.log_path)) == 16 + 4 <= 22
    rows[1] |= columns
    # --fresh: an evaluation not made again yet in this invocation is about to be deleted, its ledger not counted
    assert judging_left(capped, rows, "refed").evaluate.max_calls == 22 - 4
    assert judging_left(capped, rows, "refed", fresh=True).evaluate.max_calls == 22
    assert unfinished_students(rows) == [
        f"sample_level: its student's evaluation is budget: {columns['student_verdict']}"
    ]
    spent = load_config(None, judge_overrides(server, *overrides, "evaluate.max_calls=16"))
    assert judging_left(spent, rows, "sample_level") is None
    skipped = evaluation_columns(spent, rows, rows[1], None, "error", False)
    assert skipped["student_status"] == "budget" and skipped["student_verdict"].startswith("not evaluated")
    assert len(read_log(server.cfg.log_path)) == 20  # nothing judged for it
    uncapped = load_config(None, judge_overrides(server))
    assert judging_left(uncapped, rows, "sample_level") is uncapped
    # caps lowered below what was spent: an evaluation that had finished keeps its figures
    low = load_config(None, judge_overrides(server, *overrides, "evaluate.max_calls=4"))
    kept = evaluation_columns(low, rows, rows[0], None, "error", False)
    assert (kept["student_status"], kept["student_win_rate"], kept["student_judge_calls"]) == ("complete", 1.0, 16)


def test_a_batch_the_server_answered_in_part_keeps_its_answers(server_factory, tmp_path, monkeypatch):
    import refed_dspy.training.evaluate as evaluate

    def first_only(lm, texts, server):
        return [f"kept {texts[0]}"] + [RunAborted("the server went away")] * (len(texts) - 1)

    monkeypatch.setattr(evaluate, "served_answers", first_only)
    monkeypatch.setattr(evaluate, "check_served", lambda config, roles, budget: None)
    student, baseline, eval_set, _ = setup(tmp_path)
    names = ["evaluate.server='http://127.0.0.1:9/v1'", "evaluate.student_model='stu'", "evaluate.baseline_model='b'"]
    config = load_config(None, judge_overrides(server_factory(), *names))
    with pytest.raises(RunAborted, match="went away"):
        evaluate_students(student, eval_set, tmp_path / "part", config, baseline=baseline)
    kept = [json.loads(x) for x in (tmp_path / "part" / ANSWERS).read_text().splitlines()]
    assert kept == [{"id": "q0", "role": "student", "instruction": "Question 0?", "answer": "kept Question 0?"}]


def test_the_judging_goes_in_batch_mode_as_judging_says(server_factory, tmp_path):
    """[judging] mode = "batch": the evaluation's judgments go by the provider's batch API (the loopback's), each
    counted once, and the figures are the same judge's."""
    server = server_factory(prefers=TASTE, extra={"batch_validating_s": 0.01, "batch_finalizing_s": 0.01})
    student, baseline, eval_set, out = setup(tmp_path, n=4)
    batch = ["judging.mode='batch'", "batch.poll_s=0.05", "batch.linger_s=0.2"]
    result = evaluate_students(
        student, eval_set, out, load_config(None, judge_overrides(server, *batch)), baseline=baseline
    )
    log = read_log(server.cfg.log_path)
    lines = [e for e in log if e.get("custom_id")]
    assert result.status == "complete" and (result.decisive, result.wins) == (8, 8)
    assert result.judge_calls == len(lines) == 8 and len({e["custom_id"] for e in lines}) == 8
    assert not [e for e in log if e.get("path", "").endswith("/chat/completions") and not e.get("custom_id")]


def test_a_batch_evaluation_stopped_by_its_cap_resumes_in_its_folder(server_factory, tmp_path):
    """Batch mode leaves its batch store's journal in the evaluation's folder: the next run in that folder (the rest
    of a capped one, or the same again) is not refused as a folder holding a run dir (it was, and the refusal's
    advice, a new folder, paid every judgment again); it judges the rest, and every judge call is the server's."""
    server = server_factory(prefers=TASTE, extra={"batch_validating_s": 0.01, "batch_finalizing_s": 0.01})
    student, baseline, eval_set, out = setup(tmp_path, n=6)
    assert (run_status(out).kind, run_status(out).state) == ("evaluation", "stopped")  # killed before judging
    batch = ["judging.mode='batch'", "batch.poll_s=0.05", "batch.linger_s=0.2"]
    capped = load_config(None, judge_overrides(server, *batch, "evaluate.max_calls=8"))
    first = evaluate_students(student, eval_set, out, capped, baseline=baseline)
    assert first.status == "budget" and (out / "judge_batches" / "journal.jsonl").is_file()
    said = run_status(out)  # `refed status` of the folder: an evaluation, not a synthesis that made nothing
    assert (said.kind, said.state, said.samples, said.size) == ("evaluation", "budget", first.pairs, 6)
    assert said.calls == first.judge_calls and said.verdict == first.verdict
    assert f"instructions judged: {first.pairs}/6" in status_text(said)
    whole = load_config(None, judge_overrides(server, *batch))
    for _ in range(2):  # the rest, then the same again: nothing new
        rest = evaluate_students(student, eval_set, out, whole, baseline=baseline)
        lines = [e for e in read_log(server.cfg.log_path) if e.get("custom_id")]
        assert rest.status == "complete" and rest.pairs == 6 and rest.judge_calls == len(lines) == 12
    assert (run_status(out).state, run_status(out).calls) == ("complete", 12)


def test_fresh_with_the_same_judge_config_keeps_the_judgments_and_what_they_paid(server_factory, tmp_path):
    """`--fresh` (on_mismatch="fresh") deletes the judgments made with another judge config: with the same one it
    keeps them, and what they paid stays under the cap (it deleted the ledger, and each run spent the cap again)."""
    server = server_factory(prefers=TASTE)
    student, baseline, eval_set, out = setup(tmp_path)
    capped = load_config(None, judge_overrides(server, "evaluate.max_calls=6"))
    for _ in range(3):
        result = evaluate_students(student, eval_set, out, capped, baseline=baseline, on_mismatch="fresh")
        assert result.status == "budget" and result.judge_calls == 4 == len(read_log(server.cfg.log_path))
    other = load_config(None, judge_overrides(server, "evaluate.max_calls=6", "judge.temperature=0.5"))
    again = evaluate_students(student, eval_set, out, other, baseline=baseline, on_mismatch="fresh")
    assert again.judge_calls == 4 and len(read_log(server.cfg.log_path)) == 8  # another judge: judged again


def test_the_baseline_answers_once_for_every_student_compared_with_it(server_factory, tmp_path, monkeypatch):
    """`reuse` (compare --train's other methods' evaluations): the baseline's answers another evaluation made under
    the same plan are taken, not made again; under another plan (another max_new_tokens) they are not."""
    from refed_dspy.training.evaluate import lent, plan_of, side_of
    from refed_dspy.training.student import Student

    def no_model_here(self):
        raise AssertionError("a student was loaded in this process")

    monkeypatch.setattr(Student, "load", no_model_here)
    server = server_factory(prefers=TASTE)
    first, baseline, eval_set, out = setup(tmp_path)
    config = load_config(None, judge_overrides(server))
    evaluate_students(first, eval_set, out, config, baseline=baseline)
    second = trained(tmp_path / "second")
    out2 = tmp_path / "ev2"
    out2.mkdir()
    (out2 / ".refed-dir").write_text("evaluate\n")
    mine = [
        {"id": f"q{i}", "role": "student", "instruction": f"Question {i}?", "answer": "Splendid."} for i in range(8)
    ]
    (out2 / ANSWERS).write_text("".join(json.dumps(r) + "\n" for r in mine))
    result = evaluate_students(second, eval_set, out2, config, baseline=baseline, reuse=[out])
    rows = [json.loads(x) for x in (out2 / ANSWERS).read_text().splitlines()]
    theirs = [json.loads(x) for x in (out / ANSWERS).read_text().splitlines() if '"baseline"' in x]
    assert [r for r in rows if r["role"] == "baseline"] == theirs and len(theirs) == 8
    assert (result.pairs, result.decisive, result.wins) == (8, 16, 16)  # judged against the lent answers
    items = read_instructions(eval_set)
    sides = [side_of(second, "student"), side_of(baseline, "baseline")]
    other = plan_of(load_config(None, ["evaluate.max_new_tokens=64"]), sides, "float32")
    assert lent([out], other, items) == {} and len(lent([out], plan_of(config, sides, "float32"), items)) == 8
