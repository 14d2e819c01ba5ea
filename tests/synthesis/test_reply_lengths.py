"""The reply lengths an estimate assumes, said with where they come from (issue 69, item 6): the defaults (and then
`--pilot N` is offered), this model's earlier runs, or a pilot; never longer than the max_tokens a call is sent; and
the line `refed synthesize` starts a local run with says the same as `refed estimate`."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pytest
from cli_helpers import run_refed, sets
from conftest import run_overrides
from loopback_server import LoopbackServer, ServerConfig

from refed_dspy.clients import local_server
from refed_dspy.clients.calls import current_stage
from refed_dspy.clients.local_server import LocalServer, Reply, Speed
from refed_dspy.config import load_config
from refed_dspy.synthesis import estimate as estimate_module
from refed_dspy.synthesis.estimate import Lengths, estimate, eta_line, format_estimate, made_up_value
from refed_dspy.synthesis.pilot import pilot_estimate
from refed_dspy.synthesis.replies import ReplyLengths, earlier_runs, stage_sums

LOCAL = Path(__file__).resolve().parents[2] / "configs" / "local.toml"


def _said(e) -> str:
    """The estimate's line about its reply lengths."""
    [line] = [x for x in format_estimate(e).splitlines() if "replies assumed at" in x]
    return line


def _per_call(e, stage: str) -> float:
    row = e.stages[stage]
    return row["completion_tokens"] / row["calls"]


def _old_run(folder: Path, model: str, by_stage: dict[str, tuple[int, int]], samples: int = 10) -> Path:
    """A finished run's summary.json in `folder`: its teacher `model`, its stages' (calls, completion tokens)."""
    folder.mkdir(parents=True)
    usage = {
        "by_stage": {
            name: {"calls": calls, "completion_tokens": tokens, "reasoning_tokens": 0}
            for name, (calls, tokens) in by_stage.items()
        }
    }
    summary = {"teacher": model, "samples": samples, "usage": usage}
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def test_unmeasured_lengths_are_named_as_the_defaults_and_a_pilot_is_offered(tmp_path):
    e = estimate(load_config(None, [f"run.dir='{tmp_path / 'run'}'", "synthesis.size=100"]))
    assert set(e.replies.source.values()) == {"default"}
    for stage in ("feedback", "synthesize", "generate", "improve"):  # each stage's length, as the table has it
        assert e.replies.tokens[stage] == round(_per_call(e, stage))
    line = _said(e)
    assert f"{e.replies.tokens['generate']:,} for generate" in line
    assert f"{e.replies.tokens['improve']:,} for improve" in line
    assert "the defaults, not measured" in line and f"references' at {e.lengths['response']:,} tokens" in line
    assert line.endswith("`refed estimate --pilot 10` measures them")
    small = estimate(load_config(None, [f"run.dir='{tmp_path / 'run'}'", "synthesis.size=6"]))
    assert "--pilot 5` measures them" in _said(small)  # a pilot smaller than the run


def test_no_reply_is_assumed_longer_than_the_max_tokens_its_call_is_sent(tmp_path):
    """The improver writes an analysis, a plan and the whole response: made up from the references, its reply is
    longer than 512 tokens, which configs/local.toml sends as max_tokens. The model cannot write more than that."""
    over = [f"run.dir='{tmp_path / 'run'}'", "synthesis.size=20"]
    free = estimate(load_config(None, [*over, "teacher.max_tokens=4096"]))
    assert _per_call(free, "improve") > 512 and not free.replies.capped
    capped = estimate(load_config(None, [*over, "teacher.max_tokens=512"]))
    assert _per_call(capped, "improve") == 512 and capped.replies.capped == ["improve"]
    assert capped.stages["improve"]["completion_tokens"] == 20 * 512
    assert capped.stages["generate"] == free.stages["generate"]  # under the limit: as it was
    assert "cut to max_tokens 512 for improve" in _said(capped)


def test_this_model_s_earlier_runs_size_the_replies_and_are_named(tmp_path):
    model = load_config(None, []).teacher.model
    old = _old_run(tmp_path / "old", model, {"generate": (10, 1_500), "improve": (10, 3_000)})
    _old_run(tmp_path / "other", "openai/gpt-4.1", {"generate": (10, 50_000)})  # another model: not this one's
    over = [f"run.dir='{tmp_path / 'run'}'", "synthesis.size=100"]
    assert earlier_runs(tmp_path / "run", model) == ({"generate": 150, "improve": 300}, [str(old)])
    # beside another run: one of another method, and one whose replies another output limit cut, measure nothing
    apart = tmp_path / "apart"
    kept = _old_run(apart / "old", model, {"generate": (10, 1_500)})
    other_method = _old_run(apart / "reflection", model, {"generate": (10, 9_000)})
    summary = json.loads((other_method / "summary.json").read_text())
    (other_method / "summary.json").write_text(json.dumps({**summary, "method": "reflection"}))
    short = _old_run(apart / "short", model, {"generate": (10, 100)})
    (short / "config.toml").write_text("[teacher]\nmax_tokens = 64\n")
    assert earlier_runs(apart / "run", model, "refed", 512) == ({"generate": 150}, [str(kept)])
    # the newcomer trial: runs of the model's name served by a stand-in sized the real provider's replies; a run made
    # at another endpoint (its fingerprint's) is another server's model of that name
    (kept / "fingerprint.json").write_text(json.dumps({"teacher": {"api_base": "http://127.0.0.1:8000/v1"}}))
    assert earlier_runs(apart / "run", model, "refed", 512) == ({}, [])
    assert earlier_runs(apart / "run", model, "refed", 512, "http://127.0.0.1:8000/v1") == (
        {"generate": 150},
        [str(kept)],
    )
    (kept / "fingerprint.json").write_text(json.dumps({"teacher": {"api_base": None}}))  # the provider's own
    assert earlier_runs(apart / "run", model, "refed", 512) == ({"generate": 150}, [str(kept)])
    e = estimate(load_config(None, over))
    assert e.replies.tokens["generate"] == 150 == round(_per_call(e, "generate"))
    assert e.replies.tokens["improve"] == 300 == round(_per_call(e, "improve"))
    assert e.replies.source == {
        "feedback": "default",
        "synthesize": "default",
        "generate": "measured",
        "improve": "measured",
    }
    line = _said(e)
    assert f"at 150 tokens a call for generate, 300 for improve: measured on this model's earlier run ({old})" in line
    assert line.endswith("`refed estimate --pilot 10` measures the rest")
    # the improve prompts carry drafts as long as the measured responses: shorter than the defaults' drafts
    walked = estimate(load_config(None, over), earlier=False)
    assert set(walked.replies.source.values()) == {"default"}
    shorter = walked.stages["improve"]["prompt_tokens"] - e.stages["improve"]["prompt_tokens"]
    drafts = (round(_per_call(walked, "generate")) - 150) * 100
    assert shorter == pytest.approx(drafts, rel=0.2)


def test_reply_tokens_leave_out_hidden_reasoning_and_calls_of_unknown_tokens():
    usage = {
        "by_stage": {
            "improve": {"calls": 12, "interrupted_calls": 2, "completion_tokens": 5_000, "reasoning_tokens": 1_000},
            "generate": {"calls": 3, "unmetered_calls": 3, "completion_tokens": 0},
        }
    }
    assert stage_sums(usage) == {"improve": (4_000, 10)}


def test_a_pilot_s_lengths_are_the_estimate_s_and_named_as_the_pilot_s(tmp_path):
    with LoopbackServer(ServerConfig()) as srv:
        over = run_overrides(srv, tmp_path / "run", 20, **{"seeds.limit": 4, "synthesis.instructions_per_feature": 2})
        e = pilot_estimate(load_config(None, over), 4)
        assert set(e.replies.source.values()) == {"pilot"} and e.replies.pilot_samples == 4
        for stage in e.stages:
            assert e.replies.tokens[stage] == round(_per_call(e, stage))
        line = _said(e)
        assert f"measured on the pilot of 4 samples ({tmp_path / 'run' / 'pilot'})" in line
        assert "--pilot" not in line and "the defaults" not in line
        # an estimate after it, with no pilot asked: the pilot is this model's earlier run, its lengths measured
        after = estimate(load_config(None, over))
        assert srv.state.count == e.pilot["calls"]  # the walk made no call
    assert set(after.replies.source.values()) == {"measured"}
    assert after.replies.measured_in == [str(tmp_path / "run" / "pilot")]
    assert after.replies.tokens["generate"] == e.replies.tokens["generate"]


def test_the_cli_says_the_lengths_and_writes_them(tmp_path):
    over = [f"run.dir='{tmp_path / 'run'}'", "synthesis.size=50"]
    code, out, err = run_refed("estimate", *sets(over))
    assert code == 0, err
    assert "replies assumed at " in out and "`refed estimate --pilot 10` measures them" in out
    saved = json.loads((tmp_path / "run" / "estimate.json").read_text())
    replies = ReplyLengths.model_validate(saved["replies"])
    assert set(replies.source.values()) == {"default"} and replies.tokens["improve"] > 0


WRITES = {"feedback": 70, "synthesize": 85, "generate": 35, "improve": 285}  # SmolLM2's, a run here at load 1


def _local(monkeypatch, tmp_path, speed: Speed | None, serving: bool, writes: dict | None = None, asked=None):
    """configs/local.toml, its model serving (`serving`) at `speed`, writing `writes` tokens to each stage's prompts
    (None: its replies say no usage) in replies the adapter can read, each made from the request's response_format
    with every "plan" written "zebra"; each request goes to `asked` as (stage, messages, settings)."""
    config = load_config(LOCAL, ["synthesis.size=20", f"run.dir='{tmp_path / 'local'}'"])
    monkeypatch.setattr(estimate_module, "measure_speed", lambda url, slots, **sizes: speed)
    monkeypatch.setattr(estimate_module, "listening", lambda url: serving)
    asked = [] if asked is None else asked

    def model(url, messages, settings):
        asked.append((current_stage(), messages, settings))
        if writes is None:
            return None
        schema = settings["response_format"]["json_schema"]["schema"]
        value = made_up_value(schema, "", Lengths(40, 20), schema.get("$defs") or {}, itertools.count())
        return Reply(json.dumps(value).replace("plan", "zebra"), writes[current_stage()])

    monkeypatch.setattr(estimate_module, "sample_reply", model)
    return config


def test_the_local_run_s_first_line_says_what_the_estimate_says(monkeypatch, tmp_path):
    """`refed synthesize` on a local model it starts says how long the run takes: the same tokens, the same reply
    lengths and their source, and the same speed as `refed estimate` says while the model serves (not the pilot the
    estimate offers: the run is measuring them; a pilot's own run offered a pilot of one sample fewer)."""
    config = _local(monkeypatch, tmp_path, Speed(400.0, 40.0), serving=True)
    server = LocalServer(None, "http://127.0.0.1:8080", Path(local_server.GGUF), 2, 8192)
    line = eta_line(config, server)
    e = estimate(config)
    assert e.wall is None and e.local is not None and e.local.completion_per_s == 40.0
    [wall] = [x for x in format_estimate(e).splitlines() if x.startswith("  wall time: ")]
    said = e.replies.text(offer=False)  # the run measures its replies itself: no pilot offered
    assert line == f"local model: a run of 20 samples takes {wall.removeprefix('  wall time: ')}; {said}"
    assert f"{e.total['completion_tokens']:,.0f} tokens to write at 40.0/s" in line
    assert "measured just now" in line and "the defaults, not measured" in line and "--pilot" not in line
    assert "--pilot 10" in format_estimate(e)


def test_a_served_local_model_s_replies_are_sized_on_what_it_writes_to_the_run_s_prompts(monkeypatch, tmp_path):
    """SmolLM2 writes far shorter replies than the references, and each stage its own way (drafts of 35 tokens,
    improvements of 285): the first line of a load-6 run assumed 18,412 tokens to write where it wrote 10,518, from
    one reply to one reference's instruction. It is asked the run's own prompts now, two references' way through the
    program, each step on its own reply; the stages are sized on what it wrote, and the line says so."""
    plain = estimate(_local(monkeypatch, tmp_path, Speed(400.0, 40.0), serving=True))
    asked: list[tuple] = []
    config = _local(monkeypatch, tmp_path, Speed(400.0, 40.0), serving=True, writes=WRITES, asked=asked)
    e = estimate(config)
    assert e.replies.tokens == WRITES and set(e.replies.source.values()) == {"asked"}
    assert {stage for stage, _, _ in asked} == set(WRITES) and sum(a[0] == "generate" for a in asked) == 2
    _, messages, settings = asked[-1]
    assert settings["max_tokens"] == 512 and settings["frequency_penalty"] == 0.5 and settings["temperature"] == 0.8
    later = [json.dumps(m) for stage, m, _ in asked if stage != "feedback"]
    assert all("zebra" in text for text in later)  # each step goes on from the model's own reply
    assert e.total["completion_tokens"] != plain.total["completion_tokens"]
    assert "the local model's replies to the run's prompts just now" in e.replies.text()
    assert "--pilot 10" in e.replies.text()  # not measured on a run: the pilot is still offered
    line = eta_line(config, LocalServer(None, "http://127.0.0.1:8080", Path(local_server.GGUF), 2, 8192))
    assert line is not None and e.replies.text(offer=False) in line and local_text_of(e) in line


def test_a_reply_the_adapter_cannot_read_is_counted_and_the_walk_goes_on(monkeypatch, tmp_path):
    """A small model's unusable reply still says how long it writes; the next step goes on from a made-up one."""
    asked: list[tuple] = []
    config = _local(monkeypatch, tmp_path, Speed(400.0, 40.0), serving=True, asked=asked)
    monkeypatch.setattr(
        estimate_module,
        "sample_reply",
        lambda url, messages, settings: asked.append(current_stage()) or Reply("not json", WRITES[current_stage()]),
    )
    e = estimate(config)
    assert e.replies.tokens == WRITES and set(asked) == set(WRITES)


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")  # no traceback either
def test_a_reply_that_breaks_a_later_step_ends_that_walk_not_the_command(monkeypatch, tmp_path):
    """Instructions the contract takes and the program then cleans away ("1.", "-") leave the sample step nothing to
    answer: that walk ends there, the lengths asked so far stand, the rest keep the defaults."""
    config = _local(monkeypatch, tmp_path, Speed(400.0, 40.0), serving=True, writes=WRITES)
    model = estimate_module.sample_reply

    def emptied(url, messages, settings):
        reply = model(url, messages, settings)
        if current_stage() != "synthesize":
            return reply
        value = json.loads(reply.text)
        return Reply(json.dumps({k: ["1."] * len(v) if isinstance(v, list) else v for k, v in value.items()}), 85)

    monkeypatch.setattr(estimate_module, "sample_reply", emptied)
    e = estimate(config)
    assert e.replies.source["feedback"] == "asked" and e.replies.source["synthesize"] == "asked"
    assert e.replies.source["generate"] == "default" and e.replies.source["improve"] == "default"


def test_an_earlier_run_s_lengths_are_not_asked_again(monkeypatch, tmp_path):
    asked: list[tuple] = []
    config = _local(monkeypatch, tmp_path, Speed(400.0, 40.0), serving=True, writes=WRITES, asked=asked)
    by_stage = {"feedback": (4, 300), "synthesize": (4, 400), "generate": (10, 900), "improve": (10, 2000)}
    _old_run(tmp_path / "local", "openai/smollm2", by_stage)
    e = estimate(config)
    assert asked == [] and set(e.replies.source.values()) == {"measured"}


def local_text_of(e) -> str:
    [wall] = [x for x in format_estimate(e).splitlines() if x.startswith("  wall time: ")]
    return wall.removeprefix("  wall time: ")


def test_a_local_model_not_serving_gets_no_hosted_speed(monkeypatch, tmp_path):
    """Before the local model serves, its speed is unknown: the estimate says so and where it will be measured,
    instead of a time at a hosted model's assumed speed."""
    config = _local(monkeypatch, tmp_path, None, serving=False)
    text = format_estimate(estimate(config))
    assert "wall time: not known until the local model serves" in text
    assert "online about" not in text and "batch about" not in text


def test_a_copied_run_dir_is_its_run_once(tmp_path):
    model = load_config(None, []).teacher.model
    old = _old_run(tmp_path / "old", model, {"generate": (10, 1_500)})
    summary = json.loads((old / "summary.json").read_text())
    finished = {"run_dir": str(old), "finished_at": "2026-11-30T01:02:03Z"}
    (old / "summary.json").write_text(json.dumps({**summary, **finished}))
    shutil.copytree(old, tmp_path / "old-backup")  # a user's `cp -r`: the same run, its summary as it was
    other = _old_run(tmp_path / "other", model, {"generate": (10, 2_500)})
    assert earlier_runs(tmp_path / "run", model) == ({"generate": 200}, [str(old), str(other)])
