"""How a signature's prompt is worded (adapters/wording.py): each field and each bound stated once, the response schema
no larger than what a model must be told, and nothing a model does not need."""

from __future__ import annotations

import inspect
import json
import re

import dspy
import pytest

import refed_dspy.signatures as signatures
from refed_dspy.adapters import RefedChatAdapter, RefedJSONAdapter
from refed_dspy.adapters.wording import told_schema
from refed_dspy.programs.synthesis import asking_for
from refed_dspy.signatures import ImproveResponse, SynthesizeInstructions, pointwise_signature

ADAPTERS = {
    "chat": RefedChatAdapter(),
    "json": RefedJSONAdapter(schema=False),
    "grammar": RefedJSONAdapter(dialect="full"),  # the schema constrains decoding; the model does not see it
    "openai": RefedJSONAdapter(dialect="openai"),  # the model is shown the schema
    "anthropic": RefedJSONAdapter(dialect="anthropic"),
}


def _signatures() -> list[type[dspy.Signature]]:
    ours = [
        obj
        for _, obj in inspect.getmembers(signatures, inspect.isclass)
        if issubclass(obj, dspy.Signature) and obj.__module__.startswith("refed_dspy.signatures")
    ]
    return [*ours, asking_for(SynthesizeInstructions, 10), pointwise_signature(["helpfulness", "accuracy"])]


def _prompt(adapter, signature) -> tuple[str, str]:
    """(the text of the prompt, the response schema it sends as JSON or '')."""
    inputs = {name: f"<{name} value>" for name in signature.input_fields}
    text = "\n".join(m["content"] for m in adapter.format(signature, [], inputs))
    fmt = adapter.request_options(signature).get("response_format") or {}
    return text, json.dumps(fmt.get("json_schema", {}).get("schema", {})) if "json_schema" in fmt else ""


def _keys(schema: dict) -> list[str]:
    """Every property name of a schema, nested ones too."""
    out = []
    for name, node in (schema.get("properties") or {}).items():
        out.append(name)
        out += _keys(node) + _keys(node.get("items") or {})
    for node in (schema.get("$defs") or {}).values():
        out += _keys(node)
    return out


@pytest.mark.parametrize("mode", list(ADAPTERS))
def test_each_field_is_stated_once_and_each_input_only_where_its_value_is(mode):
    adapter = ADAPTERS[mode]
    for sig in _signatures():
        text, schema = _prompt(adapter, sig)
        system = text.split("\n[[ ## ")[0]
        for name in sig.input_fields:  # the value under its marker, and at most a line saying what it is
            assert text.count(f"[[ ## {name} ## ]]") == 1, (sig.__name__, mode, name)
            assert system.count(f"`{name}`") <= 1, (sig.__name__, mode, name)
        from refed_dspy.adapters.contract import output_schema

        names = _keys(output_schema(sig))
        for name in names:  # in the text's list of outputs, or in the schema the model is shown: once
            said = len(re.findall(rf'"{name}" \(|\[\[ ## {name} ## \]\] \(', system))
            shown = schema.count(f'"{name}": {{') if adapter.schema_shown else 0
            assert said + shown == 1, (sig.__name__, mode, name, said, shown)
        assert "Your input fields are" not in text and "In adhering to this structure" not in text
        assert "must be formatted as a valid Python" not in text


@pytest.mark.parametrize("mode", list(ADAPTERS))
def test_each_bound_is_stated_once_and_no_guard_at_all(mode):
    """A score's range and an exact count are told once (in the text, or in the schema the model is shown); the caps
    that only stop runaway decoding (a text's length, a list's most items) are told nowhere."""
    adapter = ADAPTERS[mode]
    scores = pointwise_signature(["helpfulness", "accuracy"])
    text, schema = _prompt(adapter, scores)
    said = text.count("from 1 to 10") + (schema.count('"maximum": 10') + schema.count("from 1 to 10")) * (
        adapter.schema_shown
    )
    assert said == 2, (mode, text, schema)  # one per criterion (the instructions word their scale otherwise)
    count = asking_for(SynthesizeInstructions, 10)
    text, schema = _prompt(adapter, count)
    told = text.count("exactly 10") + (schema.count('"maxItems": 10') + schema.count("exactly 10")) * (
        adapter.schema_shown
    )
    assert told == 1, (mode, text, schema)
    for sig in _signatures():
        text, schema = _prompt(adapter, sig)
        assert "characters" not in text and "at most 20" not in text
        if adapter.schema_shown:
            assert not re.search(r'"(minLength|maxLength)"|"maxItems": 20|characters', schema), (sig.__name__, mode)


def test_a_grammar_server_gets_every_guard_to_enforce_and_a_shown_schema_none():
    grammar = json.loads(_prompt(ADAPTERS["grammar"], ImproveResponse)[1])
    shown = json.loads(_prompt(ADAPTERS["openai"], ImproveResponse)[1])
    assert grammar["properties"]["improved_response"]["maxLength"] == 24_000
    assert grammar["$defs"]["Analysis"]["properties"]["original_strengths"]["maxItems"] == 20
    # the shown one: written out whole (no $defs to point into), no guard, no record docs
    assert "$defs" not in shown and "$ref" not in json.dumps(shown)
    assert shown["properties"]["analysis"]["properties"]["original_strengths"] == {
        "items": {"type": "string"},
        "type": "array",
    }
    assert told_schema(grammar) == {k: v for k, v in shown.items()}


def test_the_shown_schema_is_the_prompts_word_on_the_outputs_and_the_text_says_nothing_of_them():
    adapter = ADAPTERS["openai"]
    text, schema = _prompt(adapter, signatures.CritiqueResponse)
    assert "response_feedback" not in text and "Respond with" not in text
    assert json.loads(schema)["properties"]["response_feedback"] == {
        "type": "string",
        "description": "Strengths first, then specific, actionable improvements.",
    }


# The prompts of format 2, as a digest of every built-in signature's in every mode (refed_dspy.config.schema).
FORMAT_DIGESTS = {2: "db3b9a7e198365da"}


def test_the_prompts_are_those_of_the_prompt_format_they_are_recorded_with():
    """A change to what any built-in signature's prompt says, in any mode, without a new PROMPT_FORMAT would let a run
    made with the old prompts resume with the new ones unsaid: bump the number, and pin the new digest here."""
    import hashlib

    from refed_dspy.config.schema import PROMPT_FORMAT

    texts = []
    for mode, adapter in ADAPTERS.items():
        for sig in sorted(_signatures(), key=lambda s: (s.__name__, list(s.fields))):
            texts.append("\x1e".join([mode, *_prompt(adapter, sig)]))
    digest = hashlib.sha256("\x1f".join(texts).encode()).hexdigest()[:16]
    assert FORMAT_DIGESTS.get(PROMPT_FORMAT) == digest, f"PROMPT_FORMAT {PROMPT_FORMAT}: these prompts are {digest}"
