"""Output contracts, schema dialects, the adapter per role, and repair before reject (unit and loopback)."""

from __future__ import annotations

import json
import re

import dspy
import pytest
from conftest import run_overrides
from dspy.utils import DummyLM
from loopback_server import read_log

from refed_dspy.adapters import (
    ContractError,
    RefedChatAdapter,
    RefedJSONAdapter,
    build_adapter,
    check_outputs,
    choose_adapter,
    output_schema,
    response_format,
    schema_for,
)
from refed_dspy.adapters.wording import sketch, told_schema
from refed_dspy.clients.calls import collect_calls
from refed_dspy.config import LMSpec, load_config
from refed_dspy.ledger.usage import usage_of
from refed_dspy.programs import PointwiseJudge
from refed_dspy.programs.synthesis import asking_for
from refed_dspy.signatures import ImproveResponse, SynthesizeInstructions, pointwise_signature
from refed_dspy.synthesis.api import synthesize

SCORES = pointwise_signature(["helpfulness", "accuracy"])


def test_schema_carries_every_bound():
    props = output_schema(SCORES)["properties"]
    assert props["accuracy"] == {"type": "integer", "minimum": 1, "maximum": 10}
    assert props["rationale"]["maxLength"] == 2000 and props["rationale"]["minLength"] == 1
    items = output_schema(asking_for(SynthesizeInstructions, 4))["properties"]["new_instructions"]
    assert (items["minItems"], items["maxItems"], items["items"]["maxLength"]) == (4, 4, 4000)
    improve = output_schema(ImproveResponse)
    analysis = improve["$defs"]["Analysis"]
    assert analysis["additionalProperties"] is False and analysis["required"] == list(analysis["properties"])
    assert analysis["properties"]["original_strengths"]["maxItems"] == 20
    assert "title" not in json.dumps(improve) and "default" not in json.dumps(improve)
    assert improve["required"] == ["analysis", "implementation_strategy", "improved_response"]
    # the count is told, the generous length cap is not (a guard: enforced and checked, never told)
    told = told_schema(output_schema(asking_for(SynthesizeInstructions, 4)))
    assert sketch(told, {}) == ['- "new_instructions" (a list of exactly 4 strings)']


def test_check_outputs_names_the_broken_bound():
    ok = check_outputs(SCORES, {"rationale": "  fine  ", "helpfulness": 7, "accuracy": 3})
    assert ok == {"rationale": "fine", "helpfulness": 7, "accuracy": 3}
    with pytest.raises(ContractError) as err:
        check_outputs(SCORES, {"rationale": "x", "helpfulness": 7, "accuracy": 63})
    assert str(err.value) == "accuracy: input should be less than or equal to 10 (got 63)"
    with pytest.raises(ContractError, match="rationale: string should have at least 1 character"):
        check_outputs(SCORES, {"rationale": "   ", "helpfulness": 7, "accuracy": 3})
    with pytest.raises(ContractError, match="new_instructions: list should have at most 2 items"):
        check_outputs(asking_for(SynthesizeInstructions, 2), {"new_instructions": ["a", "b", "c"]})


def test_dialects_move_what_a_provider_rejects_into_descriptions():
    schema = output_schema(asking_for(SynthesizeInstructions, 3))
    assert schema_for(schema, "full") == schema
    openai = schema_for(schema, "openai")["properties"]["new_instructions"]
    assert (openai["minItems"], openai["maxItems"]) == (3, 3)  # strict mode takes item counts
    assert "maxLength" not in openai["items"] and openai["items"]["description"] == "Must be 1 to 4000 characters."
    anthropic = schema_for(schema, "anthropic")["properties"]["new_instructions"]
    assert not {"minItems", "maxItems"} & set(anthropic) and "exactly 3 items" in anthropic["description"]
    scores = schema_for(output_schema(SCORES), "anthropic")["properties"]["accuracy"]
    assert scores == {"type": "integer", "description": "Must be from 1 to 10."}
    gemini = schema_for(output_schema(SCORES), "gemini")["properties"]
    assert gemini["accuracy"]["maximum"] == 10 and "maxLength" not in gemini["rationale"]
    minimal = json.dumps(schema_for(output_schema(ImproveResponse), "minimal"))
    for keyword in ("maxLength", "minLength", "maxItems", "minimum", "maximum"):
        assert f'"{keyword}"' not in minimal
    assert schema == output_schema(asking_for(SynthesizeInstructions, 3))  # translation never changes its input
    with pytest.raises(ValueError, match="unknown schema dialect"):
        schema_for(schema, "cobol")


@pytest.mark.parametrize(
    "spec, mode, dialect",
    [
        (dict(model="openai/local", api_base="http://127.0.0.1:8080/v1"), "json_schema", "full"),
        (dict(model="hosted_vllm/qwen", api_base="http://10.0.0.2:8000/v1"), "json_schema", "full"),
        (dict(model="ollama_chat/llama3.1"), "json_schema", "full"),
        (dict(model="openai/gpt-4o-mini"), "json_schema", "openai"),
        (dict(model="openai/gpt-3.5-turbo"), "chat", "openai"),
        (dict(model="openai/gpt-4o-mini", api_base="https://api.openai.com/v1"), "json_schema", "openai"),
        (dict(model="anthropic/claude-3-5-haiku-latest"), "chat", "anthropic"),
        (dict(model="anthropic/claude-sonnet-4-5"), "json_schema", "anthropic"),
        (dict(model="groq/llama-3.1-8b-instant"), "chat", "minimal"),
        (dict(model="groq/llama-3.1-8b-instant", adapter="json", schema_dialect="openai"), "json", "openai"),
        (dict(model="openai/local", api_base="http://127.0.0.1:8080/v1", adapter="chat"), "chat", "full"),
    ],
)
def test_auto_picks_what_fits_the_provider(spec, mode, dialect):
    choice = choose_adapter(LMSpec(**spec))
    assert (choice.mode, choice.dialect) == (mode, dialect) and choice.reason
    adapter = build_adapter(LMSpec(**spec))
    assert adapter.mode == mode and adapter.choice == choice


@pytest.mark.parametrize(
    "spec, shown",
    [
        (dict(model="openai/gpt-4o-mini"), True),  # OpenAI's strict mode puts the schema in front of the model
        (dict(model="anthropic/claude-sonnet-4-5"), True),
        (dict(model="azure/my-deployment", api_base="https://x.openai.azure.com", adapter="json_schema"), True),
        (dict(model="ollama_chat/llama3.1"), False),  # a grammar server only constrains decoding with it
        (dict(model="openai/local", api_base="http://127.0.0.1:8080/v1"), False),
        # a gateway in front of OpenAI's models: refed cannot tell it from a grammar server; the config says so
        (dict(model="openai/gpt-4o-mini", api_base="http://127.0.0.1:4000/v1", schema_shown=True), True),
        (dict(model="openai/gpt-4o-mini", schema_shown=False), False),
        (dict(model="openai/gpt-4o-mini", adapter="chat"), False),  # no schema is sent at all
    ],
)
def test_who_shows_the_schema_is_the_providers_word_or_the_configs(spec, shown):
    choice = choose_adapter(LMSpec(**spec))
    adapter = build_adapter(LMSpec(**spec))
    assert choice.schema_shown is adapter.schema_shown is shown and choice.as_dict()["schema_shown"] is shown
    if choice.mode == "json_schema" and not shown and "schema_shown" not in spec:
        assert "schema_shown = true for a gateway" in choice.reason  # what to set, said where the choice is
    system = adapter.format_system_message(ImproveResponse)
    assert ('"analysis"' in system or "[[ ## analysis ## ]]" in system) is not shown  # the text repeats no schema


def test_a_gateway_told_it_shows_the_schema_is_billed_for_it_once(server_factory, tmp_path):
    """A host that shows the model the schema and bills it (a gateway in front of OpenAI's models), which the dialect
    `auto` takes for a grammar server: with schema_shown = true, the text no longer repeats what the schema says."""
    billed = {}
    for shown in ("true", "false"):
        srv = server_factory(tokenizer="chars4", log_prompts=True)
        extra = {"seeds.limit": 2, "synthesis.instructions_per_feature": 2, "teacher.schema_shown": shown}
        summary = synthesize(load_config(None, run_overrides(srv, tmp_path / shown, 4, **extra)))
        assert summary["status"] == "complete" and summary["adapter"]["schema_shown"] is (shown == "true")
        log = read_log(srv.cfg.log_path)
        improve = [e for e in log if e["outputs"][0] == "analysis"]
        assert improve and all(e["response_format"]["type"] == "json_schema" for e in improve)
        said = ['"original_strengths"' in e["system"] for e in improve]
        assert said == [shown == "false"] * len(improve)
        billed[shown] = sum(e["prompt_tokens"] for e in improve) / len(improve)
    assert billed["true"] < 0.75 * billed["false"], billed


def test_json_schema_adapter_sends_the_dialects_schema_and_json_sends_json_object():
    fmt = RefedJSONAdapter(dialect="openai").request_options(SCORES)["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    # OpenAI shows the schema: it is what the model is told (the scores' range, each output's description, no length
    # cap); a grammar server's carries every bound, for its grammar, and no description
    told = fmt["json_schema"]["schema"]
    assert told == response_format(SCORES, "openai", True)["json_schema"]["schema"]
    assert told["properties"]["accuracy"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 10,
        "description": "Score for accuracy.",
    }
    assert told["properties"]["rationale"] == {
        "type": "string",
        "description": "Two to four sentences naming the main strengths and faults.",
    }
    kept = RefedJSONAdapter(dialect="full").request_options(SCORES)["response_format"]["json_schema"]["schema"]
    assert kept == schema_for(output_schema(SCORES), "full") == response_format(SCORES, "full")["json_schema"]["schema"]
    assert kept["properties"]["rationale"]["maxLength"] == 2000 and "description" not in json.dumps(kept)
    assert RefedJSONAdapter(schema=False).request_options(SCORES) == {"response_format": {"type": "json_object"}}
    assert RefedJSONAdapter(schema=False, dialect="anthropic").request_options(SCORES) == {}  # no JSON mode there
    assert RefedChatAdapter().request_options(SCORES) == {}


def test_out_of_range_score_is_repaired_with_the_error_shown():
    lm = DummyLM(
        [
            {"rationale": "solid", "helpfulness": 63, "accuracy": 5},
            {"rationale": "solid", "helpfulness": 6, "accuracy": 5},
        ]
    )
    with dspy.context(lm=lm, adapter=RefedChatAdapter(max_repairs=1)):
        pred = PointwiseJudge(["helpfulness", "accuracy"])(instruction="q", response="r")
    assert pred.scores == {"helpfulness": 6, "accuracy": 5}
    repair = lm.history[1]["messages"]
    assert repair[-2]["role"] == "assistant" and "63" in repair[-2]["content"]
    assert repair[-1]["content"].startswith(
        "That reply cannot be used: helpfulness: input should be less than or equal to 10 (got 63)"
    )


def test_without_repairs_left_the_error_is_one_line_and_keeps_the_reply():
    from dspy.utils.exceptions import AdapterParseError

    from refed_dspy.engine.failures import classify

    lm = DummyLM([{"rationale": "solid", "helpfulness": 63, "accuracy": 5}] * 2)
    with dspy.context(lm=lm, adapter=RefedChatAdapter(max_repairs=1)), pytest.raises(AdapterParseError) as err:
        PointwiseJudge(["helpfulness", "accuracy"])(instruction="q", response="r")
    failure = classify(err.value)
    assert failure.reason == "unparseable" and failure.final
    assert failure.detail == "helpfulness: input should be less than or equal to 10 (got 63) (after 1 repair)"
    assert "63" in failure.raw and len(lm.history) == 2


def test_json_schema_over_http_repairs_counts_and_keeps_raw_text(server_factory, tmp_path):
    srv = server_factory(log_prompts=True, sticky_malformed=0.3)
    run = tmp_path / "run"
    summary = synthesize(load_config(None, run_overrides(srv, run, 12, **{"seeds.limit": 4})))
    assert summary["status"] == "complete" and summary["samples"] == 12
    assert summary["adapter"]["mode"] == "json_schema" and summary["adapter"]["dialect"] == "full"
    log = read_log(srv.cfg.log_path)
    assert all(e["response_format"]["type"] == "json_schema" for e in log)
    synth = [e for e in log if e["outputs"] == ["new_instructions"] and e["turns"] == 1]
    schema = synth[0]["response_format"]["json_schema"]["schema"]["properties"]["new_instructions"]
    assert schema["minItems"] == schema["maxItems"] == 10 and schema["items"]["maxLength"] == 4000
    repairs = [e for e in log if e["turns"] == 3]
    assert repairs and all(e["messages"][-1]["content"].startswith("That reply cannot be used") for e in repairs)
    by_stage = summary["usage"]["by_stage"]
    assert sum(s["repairs"] for s in by_stage.values()) == summary["usage"]["repairs"] == len(repairs)
    assert summary["usage"]["parse_failures"] >= len(repairs) and summary["usage"]["lm_seconds"] > 0
    rejects = (run / "rejects.jsonl").read_text().splitlines() if (run / "rejects.jsonl").exists() else []
    for line in rejects:  # a repair fails too at times (a new draw of the fault): then the reject keeps the reply
        rec = json.loads(line)
        if rec["reason"] == "unparseable":
            assert rec["raw"].startswith("I'm not sure how to format this") and rec["detail"].endswith(
                "(after 1 repair)"
            )


def test_openai_dialect_reaches_the_wire_without_string_lengths(server_factory, tmp_path):
    srv = server_factory(log_prompts=True)
    synthesize(
        load_config(
            None,
            run_overrides(
                srv,
                tmp_path / "run",
                2,
                **{"seeds.limit": 1, "teacher.schema_dialect": "'openai'", "synthesis.instructions_per_feature": 2},
            ),
        )
    )
    formats = [e["response_format"]["json_schema"]["schema"] for e in read_log(srv.cfg.log_path)]
    text = json.dumps(formats)
    # OpenAI shows the model the schema: it holds the exact count a reply must meet, and none of the length caps (a
    # guard the parse checks; stated nowhere, not even in a description)
    assert formats and '"maxLength"' not in text and "characters" not in text and '"maxItems": 2' in text


def test_usage_counts_repairs_and_parse_failures_of_paid_calls_only():
    from refed_dspy.clients.calls import CallInfo

    calls = [
        CallInfo("judge_pointwise", "m", 10, 5, parse_error=True, seconds=1.0),
        CallInfo("judge_pointwise", "m", 12, 5, repair=True, seconds=2.0),
        CallInfo("judge_pointwise", "m", cache_hit=True, repair=True, parse_error=True),
    ]
    usage = usage_of(calls, None)
    assert (usage["calls"], usage["cached_calls"], usage["parse_failures"], usage["repairs"], usage["lm_seconds"]) == (
        2,
        1,
        1,
        1,
        3.0,
    )
    with collect_calls() as got:
        pass
    assert got == []


def test_json_mode_asks_for_a_json_object_and_parses_it(server_factory, tmp_path):
    srv = server_factory(log_prompts=True)
    summary = synthesize(
        load_config(
            None,
            run_overrides(
                srv,
                tmp_path / "run",
                6,
                **{"seeds.limit": 2, "teacher.adapter": "'json'", "synthesis.instructions_per_feature": 3},
            ),
        )
    )
    assert summary["status"] == "complete" and summary["adapter"]["mode"] == "json"
    log = read_log(srv.cfg.log_path)
    assert log and all(e["response_format"] == {"type": "json_object"} for e in log)
    assert all("Respond with a JSON object" in e["messages"][-1]["content"] for e in log)
    assert summary["usage"]["parse_failures"] == 0


def test_the_schema_is_not_paid_for_twice_where_the_provider_shows_it_to_the_model():
    hosted, grammar = RefedJSONAdapter(dialect="openai"), RefedJSONAdapter(dialect="full")
    inputs = {"feedback": "f", "instruction": "i", "draft_response": "d"}
    shown, kept = hosted.format(ImproveResponse, [], inputs), grammar.format(ImproveResponse, [], inputs)
    outputs = [*ImproveResponse.output_fields, "original_strengths", "planned_changes"]
    # shown the schema, the text names no output and ends with no format reminder: the instructions, then the inputs
    assert shown[0]["content"] == ImproveResponse.instructions.strip().replace("\n    ", "\n")
    assert not [name for name in outputs if name in json.dumps(shown)]
    assert shown[-1]["content"].endswith("\n[[ ## draft_response ## ]]\nd")
    # not shown it, the text states each output once, with its type, and no length cap; the reminder names no type
    text = kept[0]["content"]
    assert all(text.count(f'"{name}"') == 1 for name in outputs)
    assert '- "analysis" (an object)\n  - "original_strengths" (a list of strings)' in text
    assert "characters" not in text and "schema" not in text and "Python" not in kept[-1]["content"]
    assert kept[-1]["content"].endswith("\n\nRespond with a JSON object as described above.")
    for adapter in (hosted, grammar):
        assert adapter.template(ImproveResponse)  # the fixed text a degenerate reply might echo, either way


def test_a_loaded_program_asks_exactly_what_the_program_asked(server_factory):
    """DSPy rebuilds a signature whose instructions are set (a loaded or an optimized program) as `StringSignature`.
    The request must not carry the class name, or the same prompts go out as new requests that the cache does not
    know: an experiment's GEPA cell that returned its program unchanged was judged anew (+0.02 against its own
    baseline, where a kept program must differ by exactly 0)."""
    from refed_dspy.adapters.json_schema import schema_name
    from refed_dspy.clients.lm import build_lm
    from refed_dspy.programs import RespondAndImprove
    from refed_dspy.signatures import GenerateResponse

    assert (
        schema_name(GenerateResponse) == schema_name(GenerateResponse.with_instructions("Other words.")) == "response"
    )
    assert schema_name(ImproveResponse) == "analysis"  # the first output's name: the provider shows it to the model
    long = schema_name(dspy.Signature("question -> " + "a_very_long_output_name_" * 4))
    assert len(long) == 64 and re.fullmatch(r"[A-Za-z0-9_-]{1,64}", long)  # OpenAI's rule for the name
    srv = server_factory()
    spec = LMSpec(model="openai/m", api_base=srv.api_base, api_key_env="", adapter="json_schema", temperature=1.0)
    lm, adapter = build_lm(spec, "teacher"), build_adapter(spec)
    program = RespondAndImprove()
    loaded = RespondAndImprove()
    loaded.load_state(program.dump_state())
    assert [p.signature.__name__ for p in loaded.predictors()] == ["StringSignature"] * 2
    inputs = {"reference_instruction": "Name a prime.", "reference_response": "7 is prime.", "instruction": "Why?"}
    with dspy.context(lm=lm, adapter=adapter):
        program(**inputs, feedback="Be brief.")
        sent = len(read_log(srv.cfg.log_path))
        loaded(**inputs, feedback="Be brief.")
    assert sent == 2 and len(read_log(srv.cfg.log_path)) == sent  # the loaded program's asks came from the cache


def test_the_adapter_s_tag_reaches_the_twin_a_run_counts_a_user_s_lm_on():
    """A user's dspy.LM inside a run is counted on a twin behind the call boundary: the adapter calls the twin, handing
    it the tag (a repair flag, the prompt's repeated part, the CallInfo back); outside a run, the LM as it is, with
    nothing handed; an LM behind the boundary takes the tag itself."""
    from refed_dspy.adapters.base import handed
    from refed_dspy.clients.boundary import CallBoundary
    from refed_dspy.clients.calls import CallTag
    from refed_dspy.clients.lm import bounded
    from refed_dspy.clients.lm_routing import LedgerScope, ledger_scope

    users = dspy.LM("openai/gpt-4o-mini", api_key="k")
    tag = CallTag(repair=True)
    assert handed(users, tag, "acall") == (users, {})
    with ledger_scope(LedgerScope()):
        twin, handing = handed(users, tag, "acall")
        assert isinstance(twin, CallBoundary) and twin is not users and handing == {"refed_tag": tag}
    own = bounded(users, "teacher")
    assert handed(own, tag, "__call__") == (own, {"refed_tag": tag})
