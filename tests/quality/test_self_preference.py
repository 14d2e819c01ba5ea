"""Self-preference, said: when the judge is the teacher's model, `refed judge` says so in one line, and the report says
it too and records it in its judge block; with another judge model, neither does."""

import json

import pytest
from cli_helpers import run_refed, sets

from refed_dspy.quality.report import build_report
from refed_dspy.store.records import model_family, self_preference, self_preference_record

NOTE = "judges favour their own model's outputs"


@pytest.mark.parametrize(
    "judge,teachers,same",
    [
        ("openai/gpt-4o-mini", ["openai/gpt-4o-mini"], True),
        ("openai/gpt-4o-mini", ["azure/gpt-4o-mini-2024-07-18"], True),  # another route, a dated snapshot
        ("anthropic/claude-3-5-sonnet-latest", ["anthropic/claude-3-5-sonnet-20241022"], True),
        ("openai/gpt-4o", ["openai/gpt-4o-mini"], False),
        ("openai/gpt-4.1-mini", ["openai/gpt-4o-mini", "hosted_vllm/meta-llama/Llama-3.1-8B-Instruct"], False),
        ("hosted_vllm/meta-llama/Llama-3.1-8B-Instruct", ["openai/gpt-4o-mini", "openai/llama-3.1-8b-instruct"], True),
        (None, ["openai/gpt-4o-mini"], False),
    ],
)
def test_same_model_across_routes_and_snapshots(judge, teachers, same):
    assert self_preference(judge, teachers) == (judge if same else None)


def test_the_record_of_a_report():
    metas = [{"teacher": "openai/gpt-4o-mini"}]
    assert self_preference_record("openai/gpt-4o-mini", metas) == {
        "self_preference": True,
        "self_preference_model": "openai/gpt-4o-mini",
    }
    assert self_preference_record("openai/gpt-4o", metas)["self_preference"] is False
    assert self_preference_record(None, metas)["self_preference"] is None  # not judged: nothing to say
    assert model_family("OpenAI/GPT-4o-mini-2024-07-18") == "gpt-4o-mini"


def test_judge_and_report_say_it_when_the_judge_is_the_teacher(server_factory, tmp_path):
    srv = server_factory()
    run = tmp_path / "run"
    base = [
        f"teacher.api_base='{srv.api_base}'",
        "teacher.api_key_env=''",
        f"judge.api_base='{srv.api_base}'",
        "judge.api_key_env=''",
        f"run.dir='{run}'",
        "synthesis.size=4",
        "run.progress=false",
    ]
    code, _, err = run_refed("synthesize", *sets(base), "-q")
    assert code == 0, err
    code, out, err = run_refed("judge", "run", str(run), *sets(base[2:4]))
    assert code == 0, err
    notes = [line for line in out.splitlines() if NOTE in line]
    assert notes == [
        "  note: the judge openai/gpt-4o-mini is also the teacher: judges favour their own model's outputs, so its "
        "scores may run high (judge with another model to compare)"
    ]
    assert json.loads((run / "judge_summary.json").read_text())["self_preference"] == "openai/gpt-4o-mini"
    report = build_report(run)
    assert report.judge["self_preference"] is True and report.judge["self_preference_model"] == "openai/gpt-4o-mini"
    assert json.loads((run / "report.json").read_text())["judge"]["self_preference"] is True
    assert "id='self-preference'" in (run / "report.html").read_text() and NOTE in report.text

    # judged again by another model: no note anywhere
    other = [*base[2:4], "judge.model='openai/gpt-4.1-mini'"]
    code, out, err = run_refed("judge", "run", str(run), *sets(other), "--fresh")
    assert code == 0, err
    assert NOTE not in out and "self_preference" not in json.loads((run / "judge_summary.json").read_text())
    report = build_report(run)
    assert report.judge["self_preference"] is False and report.judge["self_preference_model"] is None
    assert "self-preference" not in (run / "report.html").read_text() and NOTE not in report.text
