"""Each synthesis method, through DSPy's DummyLM and through the loopback server, and `refed compare`."""

import asyncio
import json
from collections import Counter

import dspy
import pytest
from cli_helpers import refed, sets
from conftest import run_overrides
from dspy.utils import DummyLM
from loopback_server import read_log

from refed_dspy.config import load_config
from refed_dspy.errors import ConfigError
from refed_dspy.experiments.compare import columns_for, comparison_row, markdown_table, method_config, parse_methods
from refed_dspy.programs import ReflectPair
from refed_dspy.store.records import Reference, SampleRecord
from refed_dspy.synthesis.api import arun_synthesis, synthesize

REFS = [
    Reference.make("Explain photosynthesis simply.", "Plants turn light, water and CO2 into sugar and oxygen.", "test"),
    Reference.make(
        "Write a haiku about autumn rain.",
        "Cold rain on red leaves / the gutter hums its one note / night comes early now",
        "test",
    ),
]
IMPROVED = {
    "analysis": {
        "original_strengths": ["clear"],
        "improvement_opportunities": ["example"],
        "relevant_feedback": ["be concrete"],
    },
    "implementation_strategy": {"planned_changes": ["add an example"], "rationale": "examples help"},
    "improved_response": "A better answer.",
}

# (method, outputs named in the request -> calls per reference that got feedback, per sample)
# The output field names identify the signature of each request in the server's log.
SIGNATURE = {
    "subject_areas": "describe",
    "response_feedback": "critique",
    "new_instructions": "synthesize",
    "response": "generate",
    "analysis": "improve",
    "instruction_critique": "reflect_instruction",
    "response_critique": "reflect_response",
}


def dummy_answers() -> dict:
    """DummyLM answers keyed by text that only one kind of request contains (first match wins)."""
    answers = {
        "`[[ ## subject_areas ## ]]`": {"subject_areas": "biology", "relevant_skills": "plain writing"},
        "`[[ ## response_feedback ## ]]`": {"response_feedback": "be concrete"},
        "`[[ ## instruction_critique ## ]]`": {
            "instruction_critique": "too easy",
            "new_instruction": "Harder: {i}",
            "new_response": "Full answer.",
        },
        "`[[ ## response_critique ## ]]`": {"response_critique": "thin", "better_response": "A better answer."},
        "`[[ ## analysis ## ]]`": IMPROVED,
        "`[[ ## response ## ]]`": {"response": "A draft."},
    }
    topics = iter(
        [
            "Compare tides and currents.",
            "Plan a garden budget.",
            "Debug a null pointer crash.",
            "Summarize the French revolution.",
            "Write a limerick on cats.",
            "Estimate pizza slices sold.",
            "Teach fractions with cake.",
            "Critique a resume headline.",
            "Translate idioms into plain English.",
            "Design a chess puzzle.",
            "Explain compound interest.",
            "Outline a podcast episode.",
        ]
    )
    for ref in REFS:
        for feature in ("subject_areas", "relevant_skills", "reference"):
            key = f"[[ ## reference_instruction ## ]]\n{ref.instruction}\n\n[[ ## feature_name ## ]]\n{feature}"
            answers[key] = {"new_instructions": [next(topics), next(topics)]}
    return answers


@pytest.mark.parametrize("method", ["refed", "sample_feedback", "instruction_feedback", "no_feedback", "reflection"])
def test_each_method_on_dummy_lm(method, tmp_path):
    size = 2 if method == "reflection" else 4
    cfg = load_config(
        None,
        [
            f"run.dir='{tmp_path / 'run'}'",
            f"synthesis.size={size}",
            f"synthesis.method='{method}'",
            "synthesis.instructions_per_feature=2",
            "synthesis.concurrency=4",
            "run.progress=false",
            "teacher.adapter='chat'",
        ],
    )  # DummyLM answers in the chat format
    summary = asyncio.run(arun_synthesis(cfg, teacher=DummyLM(dummy_answers()), references=REFS))
    assert summary["status"] == "complete" and summary["samples"] == size
    recs = [SampleRecord.model_validate_json(x) for x in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    assert len(recs) == size and all(r.meta.method == method for r in recs)
    for r in recs:
        if method in ("refed", "sample_feedback"):
            assert r.response == "A draft." and r.improved_response == "A better answer." and r.analysis is not None
        elif method in ("instruction_feedback", "no_feedback"):
            assert r.response == "A draft." and r.improved_response is None and r.analysis is None
        else:
            assert r.original is not None and r.original.instruction in {ref.instruction for ref in REFS}
            assert (
                r.instruction == "Harder: {i}"
                and r.response == "Full answer."
                and r.improved_response == "A better answer."
            )
            assert r.reflection.instruction_critique == "too easy" and r.reflection.response_critique == "thin"
    features = {r.meta.feature for r in recs}
    expected = {"refed": {"subject_areas", "relevant_skills"}, "no_feedback": {"reference"}, "reflection": {"both"}}
    if method in expected:
        assert features <= expected[method]
    assert summary["feedback_collected"] == (
        0 if method in ("no_feedback", "reflection") else len({r.meta.reference_id for r in recs})
    )


@pytest.mark.parametrize(
    "mode,stages",
    [
        ("instruction", ["reflect_instruction"]),
        ("response", ["reflect_response"]),
        ("both", ["reflect_instruction", "reflect_response"]),
    ],
)
def test_reflect_pair_modes(mode, stages):
    answers = dummy_answers()
    with dspy.context(lm=DummyLM(answers)):
        pred = ReflectPair(mode)(instruction="Old?", response="Old answer.")
    if mode == "response":
        assert (pred.instruction, pred.response, pred.improved_response) == ("Old?", "Old answer.", "A better answer.")
    elif mode == "instruction":
        assert (pred.instruction, pred.response, pred.improved_response) == ("Harder: {i}", "Full answer.", None)
    else:
        assert (pred.instruction, pred.response, pred.improved_response) == (
            "Harder: {i}",
            "Full answer.",
            "A better answer.",
        )
    with pytest.raises(ValueError, match="reflection mode"):
        ReflectPair("sideways")


def server_calls(log) -> Counter:
    return Counter(SIGNATURE.get(e["outputs"][0], "?") for e in log)


def test_method_call_counts_against_the_server_log(server_factory, tmp_path):
    """The calls that define each method, counted from the requests the server received."""
    n = 12
    for method in ("refed", "sample_feedback", "instruction_feedback", "no_feedback"):
        srv = server_factory()
        s = synthesize(
            load_config(
                None,
                run_overrides(
                    srv,
                    tmp_path / method,
                    n,
                    **{"synthesis.method": f"'{method}'", "synthesis.instructions_per_feature": 3},
                ),
            )
        )
        calls = server_calls(read_log(srv.cfg.log_path))
        refs = s["feedback_collected"]
        assert s["samples"] == n and calls["synthesize"] == s["units"] and calls["generate"] == n, (method, calls)
        if method == "refed":  # feedback once per reference, none per sample
            assert refs >= 1 and calls["describe"] == calls["critique"] == refs and calls["improve"] == n
        elif method == "sample_feedback":  # response feedback once per sample, instruction feedback per reference
            assert refs >= 1 and calls["describe"] == refs and calls["critique"] == n and calls["improve"] == n
        elif method == "instruction_feedback":
            assert refs >= 1 and calls["describe"] == refs and calls["critique"] == 0 and calls["improve"] == 0
        else:  # no feedback of any kind
            assert refs == 0 and calls["describe"] == calls["critique"] == calls["improve"] == 0
        assert sum(calls.values()) == s["usage"]["calls"]
        assert s["usage"]["by_stage"].get("feedback", {}).get("calls", 0) == calls["describe"] + (
            calls["critique"] if method == "refed" else 0
        )


@pytest.mark.parametrize("mode", ["instruction", "response", "both"])
def test_reflection_recycles_every_seed_pair_once(server_factory, tmp_path, mode):
    srv = server_factory()
    run = tmp_path / "run"
    s = synthesize(
        load_config(
            None,
            run_overrides(
                srv,
                run,
                100,
                **{"synthesis.method": "'reflection'", "synthesis.reflection": f"'{mode}'", "seeds.limit": 7},
            ),
        )
    )
    assert s["status"] == "exhausted" and s["samples"] == 7  # size 100, but only 7 seed pairs to recycle
    calls = server_calls(read_log(srv.cfg.log_path))
    assert calls["reflect_instruction"] == (7 if mode != "response" else 0)
    assert calls["reflect_response"] == (7 if mode != "instruction" else 0)
    assert set(calls) <= {"reflect_instruction", "reflect_response"}
    recs = [SampleRecord.model_validate_json(x) for x in (run / "samples.jsonl").read_text().splitlines()]
    assert len({r.meta.reference_id for r in recs}) == 7
    for r in recs:
        assert r.original is not None and r.meta.feature == mode
        assert (r.instruction == r.original.instruction) == (mode == "response")
        assert (r.improved_response is None) == (mode == "instruction")
    # resuming a finished reflection run makes no call
    before = len(read_log(srv.cfg.log_path))
    assert (
        synthesize(
            load_config(
                None,
                run_overrides(
                    srv,
                    run,
                    100,
                    **{"synthesis.method": "'reflection'", "synthesis.reflection": f"'{mode}'", "seeds.limit": 7},
                ),
            )
        )["samples"]
        == 7
    )
    assert len(read_log(srv.cfg.log_path)) == before


def test_parse_methods_and_method_config():
    assert parse_methods(" refed, no_feedback ") == ["refed", "no_feedback"]
    for bad, msg in (("refed,nope", "unknown method"), ("", "at least one"), ("refed,refed", "twice")):
        with pytest.raises(ConfigError, match=msg):
            parse_methods(bad)
    cfg = method_config(load_config(None, ["run.dir='runs/x'"]), "no_feedback")
    assert cfg.synthesis.method == "no_feedback" and cfg.run.dir.replace("\\", "/") == "runs/x/no_feedback"


def test_compare_from_python_refuses_an_unknown_method_before_it_writes(tmp_path):
    """refed_dspy.compare with a method no registry holds: one ConfigError naming it, and nothing written (it raised
    pydantic's ValidationError and left a compare.json of no rows behind)."""
    import refed_dspy

    config = load_config(None, [f"run.dir='{tmp_path / 'cmp'}'"])
    for methods, said in (
        (["refed", "nope"], "unknown method\\(s\\) nope;"),
        ("refed,nope", "unknown method\\(s\\) nope;"),  # as --methods takes them (it was split into letters)
        ([], "at least one"),
        (["refed"] * 2, "twice"),
    ):
        with pytest.raises(ConfigError, match=said) as err:
            refed_dspy.compare(config, methods)
        assert "--methods" not in str(err.value) and not (tmp_path / "cmp").exists()


def test_comparison_row_and_table():
    summary = {
        "method": "refed",
        "status": "complete",
        "samples": 10,
        "cost_usd": 0.02,
        "wall_s_total": 3.5,
        "run_dir": "r",
        "rejects": {"truncated": 2},
        "usage": {
            "calls": 26,
            "prompt_tokens": 1000,
            "completion_tokens": 500,
            "cached_tokens": 0,
            "by_stage": {
                "feedback": {"calls": 2},
                "synthesize": {"calls": 4},
                "generate": {"calls": 10},
                "improve": {"calls": 10},
            },
        },
    }
    row = comparison_row(summary)
    assert row["feedback_calls"] == 2 and row["other_calls"] == 24 and row["calls_per_sample"] == 2.6
    assert row["cost_per_sample_usd"] == 0.002 and row["wall_s"] == 3.5
    table = markdown_table([row]).splitlines()  # the paper's columns, rounded
    assert len(table) == 3 and table[0].count("|") == table[2].count("|")
    assert table[0] == "| method | samples | response words | feedback calls | cost | cost/sample |"
    assert table[2] == "| refed | 10 | n/a | 2 | $0.0200 | $0.0020 |"
    every = markdown_table([row], columns_for([row], all_columns=True)).splitlines()
    assert "| refed | 10 | 26 | 2 | 24 | 2.6 |" in every[2] and "truncated 2" in every[2]


def test_cli_compare_runs_siblings_and_resumes(server_factory, tmp_path):
    srv = server_factory()
    run = tmp_path / "cmp"
    args = [
        "compare",
        "--methods",
        "refed,sample_feedback,no_feedback,reflection",
        *sets(run_overrides(srv, run, 6, **{"synthesis.instructions_per_feature": 3, "seeds.limit": 6})),
    ]
    proc = refed(*args)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    data = json.loads((run / "compare.json").read_text())
    rows = {r["method"]: r for r in data["rows"]}
    assert list(rows) == ["refed", "sample_feedback", "no_feedback", "reflection"] and data["references"] == 6
    assert all(r["samples"] == 6 and r["status"] == "complete" for r in rows.values())
    for method in rows:
        assert len((run / method / "samples.jsonl").read_text().splitlines()) == 6
    log = read_log(srv.cfg.log_path)
    assert sum(r["calls"] for r in rows.values()) == len(log)
    assert rows["no_feedback"]["feedback_calls"] == 0 and rows["reflection"]["feedback_calls"] == 0
    assert rows["sample_feedback"]["feedback_calls"] > rows["refed"]["feedback_calls"] > 0
    paper, every = (run / "compare.md").read_text().split("## Every figure")
    assert "| sample_feedback |" in out and paper.count("\n| ") == 5 and every.count("\n| ") == 5
    # a second invocation resumes every sibling: no request sent, the same table
    proc = refed(*args)
    out2, err2 = proc.communicate(timeout=300)
    assert proc.returncode == 0, err2
    assert len(read_log(srv.cfg.log_path)) == len(log)
    again = json.loads((run / "compare.json").read_text())["rows"]
    assert [(r["samples"], r["calls"]) for r in again] == [(r["samples"], r["calls"]) for r in rows.values()]


def test_compare_s_synthesis_and_judging_caps_are_the_whole_command_s(server_factory, tmp_path):
    """[synthesis] and [judging] max_calls cap the comparison, not each method: three methods under a cap of 30
    calls send at most 30 (83 when each method had the cap to itself), and a judging cap of 10 makes at most 10
    judge calls over all three methods' samples (16 when each had it)."""
    teacher, judge = server_factory(), server_factory()
    run = tmp_path / "cmp"
    over = run_overrides(teacher, run, 20, **{"synthesis.instructions_per_feature": 2, "seeds.limit": 4})
    over += [f"judge.api_base='{judge.api_base}'", "judge.api_key_env=''"]
    args = ["compare", "--judge", "--methods", "refed,no_feedback,sample_feedback", *sets(over)]
    caps = ["--set", "synthesis.max_calls=30", "--set", "judging.max_calls=10"]
    proc = refed(*args, *caps)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err  # stopped on its caps
    assert len(read_log(teacher.cfg.log_path)) <= 30 and len(read_log(judge.cfg.log_path)) <= 10
    rows = {r["method"]: r for r in json.loads((run / "compare.json").read_text())["rows"]}
    assert sum(r["calls"] for r in rows.values()) == len(read_log(teacher.cfg.log_path))
    assert any(r["status"] == "budget" for r in rows.values())
    assert "no_feedback: stopped at [synthesis] max_calls or max_cost_usd, which the methods share" in out, out
    assert "sample_feedback: " in out  # stopped too, or not run: nothing was left for it
    # the synthesis cap raised, the judging cap kept: every method finishes, and all their judging shares its 10
    proc = refed(*args, "--set", "synthesis.max_calls=400", "--set", "judging.max_calls=10")
    out, err = proc.communicate(timeout=300)
    rows = {r["method"]: r for r in json.loads((run / "compare.json").read_text())["rows"]}
    assert all(r["samples"] == 20 for r in rows.values()), out + err
    assert len(read_log(judge.cfg.log_path)) <= 10, out
    assert "sample_feedback: judging stopped at [judging] max_calls or max_cost_usd, which the methods share" in out
    assert proc.returncode == 1  # a cap stopped a part of it
    # the synthesis cap lowered below what was spent, the judging cap raised: the runs stand and are all judged
    sent = len(read_log(teacher.cfg.log_path))
    proc = refed(*args, "--set", "synthesis.max_calls=10", "--set", "judging.max_calls=400")
    out, err = proc.communicate(timeout=300)
    rows = json.loads((run / "compare.json").read_text())["rows"]
    assert proc.returncode == 0 and len(read_log(teacher.cfg.log_path)) == sent, out + err
    assert all(r["samples"] == 20 and r["judge_cost_usd"] is not None for r in rows), rows
    # both caps lowered below what was spent: every part stands finished, nothing is said, exit 0
    proc = refed(*args, "--set", "synthesis.max_calls=10", "--set", "judging.max_calls=1")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "stopped" not in out, out + err
    # --fresh starts the command's budget over: the ledgers it is about to delete are not counted
    before = len(read_log(teacher.cfg.log_path))
    proc = refed(*args, "--fresh", "--set", "synthesis.max_calls=30", "--set", "synthesis.size=4")
    out, err = proc.communicate(timeout=300)
    rows = {r["method"]: r for r in json.loads((run / "compare.json").read_text())["rows"]}
    assert 0 < len(read_log(teacher.cfg.log_path)) - before <= 30, out + err
    assert rows["refed"]["samples"] > 0 and rows["refed"]["calls"] > 1  # the first method has the whole cap


def test_compare_s_caps_hold_over_invocations_that_name_other_methods(server_factory, tmp_path):
    """A comparison run one method at a time (`--methods refed`, then `--methods no_feedback`, ...) in one run dir
    spends its [synthesis] max_calls once, not once per invocation: the methods an earlier invocation ran count, with
    --fresh too (it starts over the methods it names)."""
    teacher = server_factory()
    run = tmp_path / "cmp"
    over = run_overrides(teacher, run, 20, **{"synthesis.instructions_per_feature": 2, "seeds.limit": 4})
    for method, flags in (("refed", []), ("no_feedback", []), ("sample_feedback", []), ("reflection", ["--fresh"])):
        proc = refed("compare", "--methods", method, *flags, *sets(over), "--set", "synthesis.max_calls=30")
        out, err = proc.communicate(timeout=300)
        assert proc.returncode in (0, 1), err
        # --fresh starts over the methods it names, not those an earlier invocation ran
        assert len(read_log(teacher.cfg.log_path)) <= 30, (method, out + err)
