"""Reasoning models by a one-line swap (issue 46, item 1): a model's own settings where the config is silent, said in
one line; `reasoning_effort` sent and recorded; hidden reasoning tokens counted apart and billed as output. The
loopback server answers `gpt-5-mini` as OpenAI does: a 400 for `max_tokens` or a temperature other than 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import lines, run_refed, sets
from conftest import run_overrides
from loopback_server import read_log

from refed_dspy.cli import main
from refed_dspy.config import load_config
from refed_dspy.providers.prices import default_price
from refed_dspy.quality.judge import judge_run
from refed_dspy.quality.report import build_report
from refed_dspy.synthesis.api import synthesize

MODEL = "openai/gpt-5-mini"


def _swap(teacher, judge, run, size: int, **extra) -> list[str]:
    """The default config with only the teacher's and the judge's model swapped (and pointed at loopback servers)."""
    return run_overrides(
        teacher,
        run,
        size,
        **{"teacher.model": f"'{MODEL}'", "judge.model": f"'{MODEL}'", **extra},
    ) + [f"judge.api_base='{judge.api_base}'", "judge.api_key_env=''", "judge.num_retries=2"]


def test_a_reasoning_teacher_and_judge_run_from_a_one_line_swap(server_factory, tmp_path, capsys, caplog):
    """Once exit 2 with DSPy's "reasoning models require passing temperature=1.0 or None and max_tokens >= 16000";
    with those set by hand, a judge at its default temperature 0 got OpenAI's 400. Now every request carries what
    the model takes (temperature 1, max_completion_tokens 16000, no max_tokens) and the run says so in one line."""
    teacher, judge = server_factory(), server_factory()
    run = tmp_path / "run"
    over = _swap(teacher, judge, run, 12)
    with caplog.at_level("INFO", logger="refed_dspy"):
        assert main(["synthesize", "--quiet", *sets(over)]) == 0
    out, err = capsys.readouterr()
    said = [r.getMessage() for r in caplog.records if "reasoning model" in r.getMessage()]
    assert len(said) == 1, caplog.text
    assert said[0].startswith(f"teacher {MODEL}, an OpenAI reasoning model: temperature 1")
    assert "max_tokens 16,000" in said[0] and "reasoning_effort" in said[0]
    assert not [r for r in caplog.records if r.levelname == "WARNING"] and "Traceback" not in err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["samples"] == 12
    assert summary["lm_defaults"] == said[0] and f"settings     {said[0]}" in out
    judged = judge_run(run, load_config(None, over))
    assert judged["status"] == "complete" and judged["judged"] == 12
    for srv in (teacher, judge):
        log = read_log(srv.cfg.log_path)
        assert log and all(e["status"] == 200 for e in log), [e.get("error_param") for e in log if e["status"] != 200]
        assert {(e["settings"].get("temperature"), e["settings"].get("max_completion_tokens")) for e in log} == {
            (1.0, 16000)
        }
        assert not any("max_tokens" in e["settings"] for e in log)
    fingerprint = json.loads((run / "fingerprint.json").read_text())
    assert (fingerprint["teacher"]["temperature"], fingerprint["teacher"]["max_tokens"]) == (1.0, 16000)
    assert json.loads((run / "judge_fingerprint.json").read_text())["temperature"] == 1.0


def test_the_server_refuses_what_a_reasoning_model_does_not_take(server_factory):
    """The loopback server answers a reasoning model's `max_tokens` and temperature 0.7 with OpenAI's 400 body."""
    import urllib.error
    import urllib.request

    srv = server_factory()

    def post(**body):
        data = json.dumps({"model": "gpt-5-mini", "messages": [{"role": "user", "content": "hi"}], **body}).encode()
        request = urllib.request.Request(
            f"{srv.api_base}/chat/completions", data=data, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    status, body = post(max_tokens=100)
    assert status == 400 and body["error"]["param"] == "max_tokens" and body["error"]["code"] == "unsupported_parameter"
    status, body = post(temperature=0.7, max_completion_tokens=100)
    assert status == 400 and body["error"]["param"] == "temperature" and body["error"]["code"] == "unsupported_value"
    status, body = post(temperature=1, max_completion_tokens=16000, reasoning_effort="low")
    details = body["usage"]["completion_tokens_details"]
    assert status == 200 and 0 < details["reasoning_tokens"] < body["usage"]["completion_tokens"]


@pytest.mark.parametrize(
    "override, expect",
    [
        (["teacher.reasoning_effort='low'"], "teacher.reasoning_effort: openai/gpt-4o-mini takes no reasoning_effort"),
        ([f"teacher.model='{MODEL}'", "teacher.temperature=0.7"], "takes only temperature 1"),
        ([f"teacher.model='{MODEL}'", "teacher.max_tokens=4096"], "is sent at least 16,000 output tokens"),
        (
            ["teacher.model='openai/gpt-5.1'", "teacher.reasoning_effort='minimal'"],
            "takes reasoning_effort low, medium",
        ),
        (["teacher.extra={reasoning_effort='low'}"], "set teacher.reasoning_effort instead"),
    ],
)
def test_a_setting_the_model_does_not_take_is_one_line_exit_2(tmp_path, capsys, override, expect):
    code = main(["synthesize", "--set", f"run.dir='{tmp_path / 'r'}'", *sets(override)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and expect in err, err
    assert not (tmp_path / "r").exists()


def test_reasoning_effort_reaches_the_server_and_reasoning_tokens_are_counted_apart(server_factory, tmp_path):
    """`reasoning_effort = "low"` is sent with every request; the hidden reasoning tokens the server billed are in the
    summary, the records, the ledger and report.json apart, inside the completion tokens, and the summary's cost is
    the server's own tokens at gpt-5-mini's list price (the reasoning billed as output)."""
    teacher, judge = server_factory(), server_factory()
    run = tmp_path / "run"
    over = _swap(teacher, judge, run, 10, **{"teacher.reasoning_effort": "'low'", "judge.reasoning_effort": "'low'"})
    summary = synthesize(load_config(None, over))
    assert summary["status"] == "complete" and summary["samples"] == 10
    log = read_log(teacher.cfg.log_path)
    assert log and {e["reasoning_effort"] for e in log} == {"low"} and {e["status"] for e in log} == {200}
    u = summary["usage"]
    served = sum(e["reasoning_tokens"] for e in log)
    assert served > 0 and u["reasoning_tokens"] == served
    assert u["completion_tokens"] == sum(e["completion_tokens"] for e in log) > served  # the reasoning inside
    assert sum(part["reasoning_tokens"] for part in u["by_stage"].values()) == served
    price = default_price(MODEL)
    at_list = sum(price.cost(e["prompt_tokens"], e["completion_tokens"], e.get("cached_tokens", 0)) for e in log)
    assert summary["cost_usd"] == pytest.approx(at_list, rel=1e-9)
    visible_only = sum(
        price.cost(e["prompt_tokens"], e["completion_tokens"] - e["reasoning_tokens"], e.get("cached_tokens", 0))
        for e in log
    )
    assert summary["cost_usd"] > visible_only  # billed as output: not left out of the cost
    records = lines(run / "samples.jsonl")
    assert {r["meta"]["reasoning_effort"] for r in records} == {"low"}
    assert sum(r["meta"]["usage"]["reasoning_tokens"] for r in records) <= served
    ledger = [x for x in lines(run / "ledger.jsonl") if "t" in x]
    assert sum(x.get("r", 0) for x in ledger) == served
    fingerprint = json.loads((run / "fingerprint.json").read_text())
    assert fingerprint["teacher"]["reasoning_effort"] == "low"

    judged = judge_run(run, load_config(None, over))
    judge_log = read_log(judge.cfg.log_path)
    assert {e["reasoning_effort"] for e in judge_log} == {"low"}
    assert judged["usage"]["reasoning_tokens"] == sum(e["reasoning_tokens"] for e in judge_log) > 0
    made = build_report(run, load_config(None, over))
    by_stage = json.loads((run / "report.json").read_text())["cost_by_stage"]
    assert sum(row["reasoning_tokens"] for row in by_stage.values()) == served + judged["usage"]["reasoning_tokens"]
    assert made is not None


def test_the_summary_text_says_the_reasoning_tokens(server_factory, tmp_path, capsys):
    teacher, judge = server_factory(), server_factory()
    run = tmp_path / "run"
    over = _swap(teacher, judge, run, 4, **{"teacher.reasoning_effort": "'high'"})
    assert main(["synthesize", "--quiet", *sets(over)]) == 0
    out = capsys.readouterr().out
    served = sum(e["reasoning_tokens"] for e in read_log(teacher.cfg.log_path))
    assert f"({served:,} of them reasoning, billed as output)" in out, out


def test_the_estimate_says_what_it_cannot_count_and_a_pilot_measures_it(server_factory, tmp_path):
    """A walk-through cannot count a reasoning teacher's hidden tokens: the estimate says so; a pilot measures them,
    projected with the rest (inside the completion tokens, billed as output)."""
    from refed_dspy.synthesis.estimate import estimate, format_estimate
    from refed_dspy.synthesis.pilot import pilot_estimate

    srv = server_factory()
    over = run_overrides(
        srv, tmp_path / "run", 40, **{"teacher.model": f"'{MODEL}'", "teacher.reasoning_effort": "'medium'"}
    )
    config = load_config(None, over)
    walked = estimate(config)
    assert "hidden reasoning tokens" in walked["reasoning"] and "--pilot" in walked["reasoning"]
    assert "not counted: openai/gpt-5-mini reasons" in format_estimate(walked)
    # one pilot offered for both: the reply lengths' line and this one (they said 10 and 20 in one estimate)
    assert "`refed estimate --pilot 10` measures them" in walked["reasoning"]
    assert "--pilot 20" not in format_estimate(walked)
    piloted = pilot_estimate(config, 4)
    measured = piloted["pilot"]
    served = sum(e["reasoning_tokens"] for e in read_log(srv.cfg.log_path))
    assert served > 0 and piloted["total"]["reasoning_tokens"] >= served  # scaled up from 4 samples to 40
    assert piloted["total"]["reasoning_tokens"] < piloted["total"]["completion_tokens"]
    assert "of it reasoning" in format_estimate(piloted) and measured["samples"] == 4


def test_the_estimate_warns_of_hidden_reasoning_only_where_the_model_will_reason():
    """OpenAI's reasoning models always reason; a model that only may (Anthropic's Haiku 4.5) reasons when asked, so
    the estimate says its figures leave reasoning out only then."""
    from refed_dspy.synthesis.estimate import reasoning_note

    def note(*sets: str):
        return reasoning_note(load_config(None, list(sets)))

    assert note("teacher.model='openai/gpt-5-mini'") is not None
    assert note("teacher.model='anthropic/claude-haiku-4-5'") is None
    assert note("teacher.model='anthropic/claude-haiku-4-5'", "teacher.reasoning_effort='low'") is not None
    assert note() is None


CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _quickstart_with(model: str, server, tmp_path: Path) -> Path:
    """configs/quickstart.toml with its two model lines changed to `model` (each pointed at the loopback server, as
    a key and OpenAI's host are not at hand here) and its run dir under tmp_path; nothing else of it changed."""
    text = (CONFIGS / "quickstart.toml").read_text()
    lines_of_model = [x for x in text.splitlines() if x.startswith("model = ")]
    assert len(lines_of_model) == 2, text  # the teacher's and the judge's: the swap the README and the file advise
    text = text.replace(
        lines_of_model[0], f'model = "{model}"\napi_base = "{server.api_base}"\napi_key_env = ""'
    ).replace('dir = "runs/quickstart"', f'dir = "{tmp_path / "run"}"')
    (tmp_path / "quickstart.toml").write_text(text)
    return tmp_path / "quickstart.toml"


@pytest.mark.parametrize("model", [MODEL, "openai/gpt-4.1-mini"])
def test_the_quickstart_takes_a_reasoning_model_or_not_by_its_model_lines_alone(server_factory, tmp_path, model):
    """The README's one-line swap to openai/gpt-5-mini on configs/quickstart.toml was exit 2: the file set
    max_tokens = 4096, below what the model is sent. The file now sets no setting of its model, so a reasoning model
    and a plain one both run from their model lines; gpt-5-mini, which LiteLLM's map deprecates on 2026-12-11, says so
    once, naming its successor."""
    srv = server_factory()
    config = _quickstart_with(model, srv, tmp_path)
    code, out, err = run_refed("synthesize", "--config", str(config), "--set", "run.progress=false")
    assert code == 0 and "Traceback" not in err, err
    size = load_config(config).synthesis.size
    assert size == 40 and len(lines(tmp_path / "run" / "samples.jsonl")) == size
    notes = [x for x in err.splitlines() if "deprecation date" in x]
    if model == MODEL:
        assert len(notes) == 1 and "2026-12-11" in notes[0] and "successor is openai/gpt-5.6-terra" in notes[0], err
        sent = {(e.get("settings") or {}).get("max_completion_tokens") for e in read_log(srv.cfg.log_path)}
        assert sent == {16000}, sent  # what the model takes, not a limit the file set for another
    else:
        assert notes == [], err
