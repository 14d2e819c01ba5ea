"""Degenerate outputs (issue 27, item 6): empty text, the format's placeholder, the prompt's template or a copy
of an input is repaired once, then rejected as `degenerate` with the reply kept, in every adapter."""

from __future__ import annotations

import json

import dspy
import pytest
from conftest import run_overrides
from dspy.utils import DummyLM
from loopback_server import read_log

from refed_dspy.adapters import (
    DegenerateOutputError,
    RefedChatAdapter,
    RefedJSONAdapter,
    degenerate_outputs,
    degenerate_reason,
    junk_reason,
)
from refed_dspy.adapters.degenerate import instructs
from refed_dspy.config import load_config
from refed_dspy.engine.failures import classify
from refed_dspy.programs import PointwiseJudge
from refed_dspy.signatures import (
    FIELD_NAMES,
    CompareResponses,
    GenerateResponse,
    ImproveResponse,
    ReflectInstruction,
    ReflectResponse,
    pointwise_signature,
)
from refed_dspy.store.records import RejectRecord
from refed_dspy.synthesis.api import synthesize

INPUTS = dict(
    example_instruction="Explain why the sky is blue.",
    example_response="Air scatters blue light more than red light.",
    instruction="What is two plus two, written as a single digit?",
)
ADAPTERS = {
    "chat": lambda: RefedChatAdapter(max_repairs=1),
    "json": lambda: RefedJSONAdapter(schema=False, max_repairs=1),
    "json_schema": lambda: RefedJSONAdapter(schema=True, max_repairs=1),
}
DEGENERATE = {
    "empty": ("  \n ", "is empty"),
    "empty quotes": ('""', "is empty"),
    "placeholder": ("{response}", "placeholder"),
    # the chat parser may read a bare marker as an empty field: degenerate either way
    "chat marker": ("[[ ## response ## ]]", None),
    "xml tag": ("<response></response>", "placeholder"),
    "half a marker": (",# example_response## ],", "placeholder"),  # SmolLM2, shown our json_schema prompt
    "json template": ('{"response": "{response}"}', "placeholder"),
    "template line": (
        "Answer the instruction as a helpful, knowledgeable assistant. An example pair shows the standard expected: "
        "match its quality, structure and care, not its topic.",
        "repeats the prompt's own text",
    ),
    "copy of the instruction": (
        "  What is two plus  two, written as a single digit? ",
        "copy of the input `instruction`",
    ),
    "copy of the example": ("Air scatters blue light\nmore than red light.", "copy of the input `example_response`"),
}


class Replies:
    """An LM stand-in: answers each call with the next reply, and keeps the messages it was sent."""

    def __init__(self, replies: list[str]):
        self.replies, self.sent = list(replies), []

    def __call__(self, messages: list[dict], **kwargs) -> list[str]:
        self.sent.append(messages)
        return [self.replies.pop(0)]


def reply(mode: str, values: dict) -> str:
    """A reply carrying `values` in `mode`'s format."""
    if mode == "chat":
        return "\n\n".join([*(f"[[ ## {k} ## ]]\n{v}" for k, v in values.items()), "[[ ## completed ## ]]"])
    return json.dumps(values)


@pytest.mark.parametrize("mode", list(ADAPTERS))
@pytest.mark.parametrize("kind", list(DEGENERATE))
def test_each_kind_of_degenerate_text_is_repaired_once_then_rejected_with_its_reply(mode, kind):
    text, says = DEGENERATE[kind]
    first, second = reply(mode, {"response": text}), reply(mode, {"response": text + " "})
    lm = Replies([first, second])
    with pytest.raises(DegenerateOutputError) as err:
        ADAPTERS[mode]()(lm, {}, GenerateResponse, [], INPUTS)
    assert len(lm.sent) == 2  # the ask and one repair
    repair = lm.sent[1]
    assert repair[-2] == {"role": "assistant", "content": first}
    assert repair[-1]["content"].startswith("That reply cannot be used: `response` ")
    failure = classify(err.value)
    assert failure.reason == "degenerate" and failure.final
    assert failure.detail.startswith("`response` ") and failure.detail.endswith("(after 1 repair)")
    assert says is None or says in failure.detail, failure.detail
    assert failure.raw == second  # the reply that was rejected, kept whole
    RejectRecord.model_validate({"id": "x", "stage": "generate", **failure.record_fields()})


@pytest.mark.parametrize("mode", list(ADAPTERS))
def test_a_degenerate_reply_repaired_well_is_accepted(mode):
    lm = Replies([reply(mode, {"response": "{response}"}), reply(mode, {"response": "4"})])
    values = ADAPTERS[mode]()(lm, {}, GenerateResponse, [], INPUTS)
    assert values == [{"response": "4"}] and len(lm.sent) == 2


@pytest.mark.parametrize("mode", list(ADAPTERS))
@pytest.mark.parametrize(
    "text",
    [
        "4",
        "Yes.",
        "You asked: what is two plus two, written as a single digit? It is 4.",  # quotes the instruction in a longer text
        'Write `{"response": ...}` in JSON, or {name} in a Python f-string.',  # talks about braces, says something
        "<b>4</b>",
    ],
)
def test_short_answers_and_quotes_are_not_degenerate(mode, text):
    lm = Replies([reply(mode, {"response": text})])
    assert ADAPTERS[mode]()(lm, {}, GenerateResponse, [], INPUTS) == [{"response": text}]
    assert len(lm.sent) == 1


def test_a_revision_may_keep_its_draft_but_not_copy_another_input():
    """ImproveResponse says to keep what is already good, so an unchanged draft is a legitimate answer (the
    field is declared `Revises("draft_response")`); the same text copied from the instruction is not."""
    ask, draft = (
        "Name one prime number between five and ten, in words.",
        "Seven is a prime number between five and ten.",
    )
    inputs = dict(feedback="Add an example.", instruction=ask, draft_response=draft)
    assert degenerate_reason(ImproveResponse, "improved_response", f" {draft.replace(' ', '  ')} ", inputs) is None
    assert degenerate_reason(ImproveResponse, "improved_response", ask, inputs) == (
        "`improved_response` is a copy of the input `instruction`"
    )
    reflect = dict(instruction=ask, response=draft)
    assert degenerate_reason(ReflectResponse, "better_response", draft, reflect) is None
    assert degenerate_reason(ReflectResponse, "response_critique", draft, reflect) is not None


def test_the_judges_text_is_checked_too_and_its_scores_are_not():
    sig = pointwise_signature(["helpfulness"])
    lm = DummyLM(
        [
            {"rationale": "{rationale}", "helpfulness": 4},
            {"rationale": "The answer is right but bare.", "helpfulness": 4},
        ]
    )
    with dspy.context(lm=lm, adapter=RefedChatAdapter(max_repairs=1)):
        pred = PointwiseJudge(["helpfulness"])(instruction="q?", response="4")
    assert pred.scores == {"helpfulness": 4} and len(lm.history) == 2
    assert "`rationale` is the output format's placeholder" in lm.history[1]["messages"][-1]["content"]
    answer = "The answer is four, because two and two make four."
    assert degenerate_reason(sig, "rationale", answer, {"instruction": "q?", "response": answer}) == (
        "`rationale` is a copy of the input `response`"
    )
    assert degenerate_reason(sig, "helpfulness", 4, {"response": "4"}) is None


def test_short_copies_literals_and_dspy_s_own_asks_are_not_degenerate():
    """A short answer may equal a short input (an example pair answered "Yes."); a Literal carries its contract in its
    type (a verdict "A" beside a response "A"); DSPy's instruction proposer may propose the instruction it was given."""
    from dspy.propose.grounded_proposer import generate_instruction_class

    short = dict(example_instruction="Is water wet?", example_response="Yes.", instruction="Is ice cold?")
    assert degenerate_reason(GenerateResponse, "response", "Yes.", short) is None
    long = "Air scatters blue light more than red light."  # 8 words: a copy of it is degenerate
    assert degenerate_reason(GenerateResponse, "response", long, {**short, "example_response": long}) is not None
    verdict = dict(instruction="Pick one.", response_a="A", response_b="B")
    assert degenerate_reason(CompareResponses, "verdict", "A", verdict) is None
    proposer = generate_instruction_class().signature
    basic = "Answer the question with care, citing the passage it comes from, in two sentences."
    values = {"proposed_instruction": basic}
    assert degenerate_outputs(proposer, values, {"basic_instruction": basic}) is None


@pytest.mark.parametrize("adapter", ["chat", "json", "json_schema"])
def test_placeholder_replies_over_http_become_degenerate_rejects_never_samples(server_factory, tmp_path, adapter):
    """A server that answers some asks with `{field}` in every text field: each such reply is repaired once
    (a repair draws the fault again), an item whose repair is degenerate too is a `degenerate` reject keeping
    the reply, and no accepted sample holds a placeholder."""
    srv = server_factory(log_prompts=True, sticky_placeholder=0.3)
    run = tmp_path / "run"
    extra = {"seeds.limit": 3, "teacher.adapter": f"'{adapter}'", "synthesis.instructions_per_feature": 4}
    # 40 samples: a degenerate reject needs a faulted reply whose repair is faulted too (0.09 an ask); at 10 samples
    # about one run in twelve had none
    summary = synthesize(load_config(None, run_overrides(srv, run, 40, **extra)))
    assert summary["status"] == "complete" and summary["samples"] == 40
    log = read_log(srv.cfg.log_path)
    faulted = [e for e in log if e.get("fault") == "placeholder"]
    assert faulted and summary["usage"]["repairs"] >= 1
    samples = [json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines()]
    for s in samples:
        for key in ("instruction", "response", "improved_response"):
            assert not s[key].startswith("{") and s[key].strip(), s
    rejects = [json.loads(x) for x in (run / "rejects.jsonl").read_text().splitlines()]
    degenerate = [r for r in rejects if r["reason"] == "degenerate"]
    assert degenerate, rejects
    for r in degenerate:
        assert "placeholder" in r["detail"] and r["detail"].endswith("(after 1 repair)")
        assert "{" in r["raw"] and r["final"]


# ---- junk (issue 52, item 5): what the keyless main job's SmolLM2 wrote and no check stopped -----------------------
JUNK = {
    "a lone bracket": ("{", "has no letter or digit"),
    "list markers alone": ("1. 2.", "is list markers alone"),
    "markup cut off": ("<label for=", "is markup alone"),
    "a tag alone": ("<br/>", "is markup alone"),
    "a field name": ("example_response", "is a field name"),
    # what it wrote after the lean prompts (issue 54), in 2 of 20 samples before this gate: a field's marker under a
    # name of its own, a placeholder in DSPy's markers, and a field name given no value
    "a field's marker under another name": ("### Feature description##", "is a field's marker"),
    "a placeholder in markers": ("[## example_example## ]", "is a field's marker"),
    "a field name with no value": ("relevant_skills: None", "is a field name"),
    # and in the next run (at c3dc152), in 5 of 20 samples: a placeholder, markers and field names, list markers with
    # `#`, field names in braces, bracketed numbers
    "a placeholder with punctuation": ("{{output}}},", "is a field's marker"),
    "markers and field names": ("{#} [#] {#} #[{% restructure %}] {% improvement_opportunities}", "is placeholders"),
    "list markers with #": ("#1,  #2,  #3,  #4,  #5", "is list markers alone"),
    "field names in braces": ("{{{original_strengths}}} {{{improvement_opportunities}}}", "is placeholders"),
    "bracketed numbers": ("{[2]} {[6]} {[10]} [11]", "is placeholders"),
    # and in the next (at 3915a69): a template tag alone, whatever it names
    "a template tag": ("{% include @nflg.jsonp.include_script_name %}", "is placeholders"),
    # and in the next (at b115e40), as instructions: field names in markers, numbered
    "field names in markers, numbered": ("## instruction ## [response] (2)", "is field names and markers alone"),
    # and in the next (at c39253c): a field's marker wrapped in markup
    "a marker in markup": ("<pre><code>[## example_response##]</code></pre>", "is a field"),
}


@pytest.mark.parametrize("mode", list(ADAPTERS))
@pytest.mark.parametrize("kind", list(JUNK))
def test_junk_responses_are_repaired_once_then_rejected_in_every_adapter(mode, kind):
    text, says = JUNK[kind]
    lm = Replies([reply(mode, {"response": text}), reply(mode, {"response": text})])
    with pytest.raises(DegenerateOutputError) as err:
        ADAPTERS[mode]()(lm, {}, GenerateResponse, [], INPUTS)
    assert len(lm.sent) == 2
    failure = classify(err.value)
    assert failure.reason == "degenerate" and failure.detail.startswith(f"`response` {says}"), failure.detail


@pytest.mark.parametrize(
    "text",
    ["Paris", "4", "4.", "Yes.", "∞", "<b>Paris</b>", "3 < 5", "1. Mix. 2. Bake.", "C#", "**Paris**", "[Paris]"]
    + ["Paris [1]", "[1, 2, 3]", "{1, 2}", "1, 2", "Use {name} here", "#MeToo."],
)
def test_rightly_short_answers_are_not_junk(text):
    assert junk_reason(text, ["response", "instruction"]) is None
    assert degenerate_reason(GenerateResponse, "response", text, INPUTS) is None


def test_an_instruction_output_is_junk_as_a_single_word_and_its_type_says_which_output_is_one():
    """ReflectInstruction's `new_instruction` is declared `Instructs()`: a single word there is junk; the same word as
    a response is an answer. A text in a script written without spaces is not judged by its words."""
    inputs = dict(instruction="Explain tides.", response="The moon pulls the sea.")
    assert instructs(ReflectInstruction, "new_instruction") and not instructs(ReflectInstruction, "new_response")
    assert degenerate_reason(ReflectInstruction, "new_instruction", "effect", inputs) == (
        "`new_instruction` is a single word ('effect'), not an instruction"
    )
    assert degenerate_reason(ReflectInstruction, "new_response", "Effect.", inputs) is None
    assert junk_reason("feature_name", instruction=True) is not None
    # what SmolLM2 wrote in the keyless main job: a field name in markdown's markers, a timestamp
    assert junk_reason("## feature_name##", instruction=True) is not None
    assert junk_reason("T20:36:58.1953Z", instruction=True) is not None
    assert junk_reason("What is 2 + 2?", instruction=True) is None
    assert junk_reason("解释潮汐是怎样形成的", instruction=True) is None
    assert junk_reason("Explain tides.", instruction=True) is None
    # a field name of ours written as words (SmolLM2 at c3dc152), as a unit's instructions are checked
    assert junk_reason("New Instructions", FIELD_NAMES, instruction=True) is not None
    assert junk_reason("Explain new instructions.", FIELD_NAMES, instruction=True) is None
    # field names in markers with numbering (SmolLM2 at b115e40, 2 of 20 samples); names in a sentence are words
    assert junk_reason("#[feature_name] (1)", FIELD_NAMES, instruction=True) is not None
    assert junk_reason("## feature_description ## [relevant_skills] (2)", FIELD_NAMES, instruction=True) is not None
    assert junk_reason("## new_instructions #2", FIELD_NAMES, instruction=True) is not None  # at 42a085b
    for text in ("Explain the feature_name field (1)", "Compare response_a vs response_b.", "Feedback, analysis"):
        assert junk_reason(text, FIELD_NAMES, instruction=True) is None, text
    # a value after a name is a value, whatever names a user's signature has
    names = ("answer", "score", "title", "response_a", "response_b", "text")
    for text in ("**Answer:** 4.", "**Score**: 5.", "Answer: #1", "Title #2", "<text> 1.", "response_a > response_b"):
        assert junk_reason(text, names) is None, text


def read_jsonl(path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def assert_no_junk(run) -> None:
    for s in read_jsonl(run / "samples.jsonl"):
        assert junk_reason(s["instruction"], instruction=True) is None, s["instruction"]
        for key in ("response", "improved_response"):
            if s.get(key) is not None:
                assert junk_reason(s[key]) is None, s[key]


@pytest.mark.parametrize("method", ["refed", "no_feedback", "reflection"])
def test_junk_instructions_and_responses_never_become_samples_in_any_method(server_factory, tmp_path, method):
    """A teacher that writes junk into a third of its replies (every text field, half the items of a list of
    instructions): the run still ends with its samples, none of them junk, and the rejects name each junk text."""
    srv = server_factory(sticky_junk=0.35, junk_items=True)
    run = tmp_path / "run"
    extra = {"seeds.limit": 40, "synthesis.instructions_per_feature": 4, "synthesis.method": f"'{method}'"}
    # a junk reject needs a junk reply whose repair is junk too (0.12 an ask): at 6 samples about one reflection run
    # in ten had none; reflection makes a sample of each reference at most, and junk takes about a third of them
    size = 16 if method == "reflection" else 24
    summary = synthesize(load_config(None, run_overrides(srv, run, size, **extra)))
    assert summary["status"] == "complete" and summary["samples"] == size
    assert [e for e in read_log(srv.cfg.log_path) if e.get("fault") == "junk"]
    assert_no_junk(run)
    junk = [r for r in read_jsonl(run / "rejects.jsonl") if r["reason"] == "degenerate"]
    assert junk, read_jsonl(run / "rejects.jsonl")
    if method != "reflection":  # the instructions of units: each junk item dropped with its reason, the rest kept
        dropped = [r for r in junk if r["stage"] == "synthesize" and "not an instruction" in r["detail"]]
        assert dropped and all(junk_reason(r["instruction"], instruction=True) for r in dropped)


def test_junk_is_rejected_on_the_batch_route_too(tmp_path):
    """The same gates on provider batches (the replies parse through the same adapter, the units through the same
    stage)."""
    from loopback_server import LoopbackServer, ServerConfig

    log = tmp_path / "log.jsonl"
    cfg = ServerConfig(
        log_path=str(log), sticky_junk=0.35, extra={"batch_validating_s": 0.01, "batch_finalizing_s": 0.01}
    )
    with LoopbackServer(cfg) as srv:
        run = tmp_path / "run"
        extra = {"seeds.limit": 4, "synthesis.instructions_per_feature": 4, "synthesis.mode": "'batch'"}
        extra |= {"batch.poll_s": 0.05, "batch.linger_s": 0.2}
        summary = synthesize(load_config(None, run_overrides(srv, run, 8, **extra)))
    assert summary["status"] == "complete" and summary["samples"] == 8 and summary["mode"] == "batch"
    assert [e for e in read_log(str(log)) if e.get("fault") == "junk"]
    assert_no_junk(run)
    assert [r for r in read_jsonl(run / "rejects.jsonl") if r["reason"] == "degenerate"]
