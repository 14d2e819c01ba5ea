"""How a request asks its provider to cache the repeated part of its prompt: Anthropic's cache_control marks (at most
4, none on a prefix too short for the model), OpenAI's prompt_cache_key; and nothing for `prompt_cache = false`."""

from __future__ import annotations

import json

from refed_dspy.clients.boundary import _begin, _end
from refed_dspy.clients.calls import CallTag
from refed_dspy.clients.lm import PromptCacheTransport, cache_provider
from refed_dspy.config.lm import LMSpec
from refed_dspy.providers.anthropic import CACHE, mark_stable
from refed_dspy.providers.base import StablePrompt
from refed_dspy.providers.registry import provider_for

SYSTEM = "Follow the instructions. " * 200  # 5,000 characters
DEMO_Q, DEMO_A = "[[ ## example ## ]]\n" + "a demo " * 600, '{"response": "' + "an answer " * 100 + '"}'
REFERENCE = "[[ ## example_instruction ## ]]\n" + "the reference " * 400 + "\n\n"
MAIN = REFERENCE + "[[ ## instruction ## ]]\nwrite a poem\n\nRespond with a JSON object."


def body(model: str = "claude-haiku-4-5", system: str = SYSTEM) -> dict:
    """A Messages body as DSPy's client (lm15) sends it: the system prompt a string, each message's text one block."""
    messages = [("user", DEMO_Q), ("assistant", DEMO_A), ("user", MAIN)]
    return {
        "model": model,
        "system": system,
        "messages": [{"role": r, "content": [{"type": "text", "text": t}]} for r, t in messages],
        "max_tokens": 100,
    }


def stable(system: str = SYSTEM) -> StablePrompt:
    return StablePrompt(
        texts=(system, DEMO_Q, DEMO_A, MAIN), ends=((0, None), (2, None), (3, len(REFERENCE))), key="refed-k"
    )


def marks(b: dict) -> list[str]:
    """The text each cache_control mark ends, in order."""
    blocks = ([] if isinstance(b["system"], str) else b["system"]) + [x for m in b["messages"] for x in m["content"]]
    return [x["text"] for x in blocks if "cache_control" in x]


def test_anthropic_requests_mark_the_system_prompt_the_demos_and_the_reference():
    sent = body()
    out = mark_stable(sent, stable())
    assert marks(out) == [SYSTEM, DEMO_A, REFERENCE]
    assert all(x.get("cache_control") == {"type": "ephemeral"} for x in out["system"])
    # the last user message is split where the reference ends: the per-call part follows, unmarked
    last = out["messages"][-1]["content"]
    assert [x["text"] for x in last] == [REFERENCE, MAIN[len(REFERENCE) :]] and "cache_control" not in last[1]
    assert "".join(x["text"] for x in last) == MAIN  # the prompt's text is the same
    assert sent == body()  # the body handed in is not changed


def test_a_prefix_too_short_for_the_model_is_not_marked():
    short = "Be brief."
    out = mark_stable(body(system=short), stable(short))
    # Haiku 4.5 caches 4,096 tokens or more: the system prompt alone cannot reach that, the prefix up to the demos can
    assert marks(out) == [DEMO_A, REFERENCE] and out["system"] == short
    assert CACHE.minimum("claude-haiku-4-5-20251001") == 4096 and CACHE.minimum("claude-sonnet-4-5") == 1024
    tiny = StablePrompt(texts=(short,), ends=((0, None),), key="k")
    assert mark_stable({"model": "claude-haiku-4-5", "system": short, "messages": []}, tiny)["system"] == short


def test_never_more_than_four_marks():
    sent = body()
    sent["messages"][0]["content"][0]["cache_control"] = {"type": "ephemeral"}  # two marks placed already
    sent["tools"] = [{"name": "t", "input_schema": {}, "cache_control": {"type": "ephemeral"}}]
    out = mark_stable(sent, stable())
    assert marks(out) == [DEMO_Q, DEMO_A, REFERENCE]  # the two longest prefixes marked: the system prompt is not
    assert json.dumps(out).count('"cache_control"') == 4


def test_a_request_that_is_not_the_prompt_laid_out_gets_no_mark():
    other = body()
    other["messages"][-1]["content"][0]["text"] = "something else"
    assert mark_stable(other, stable()) == other
    assert mark_stable(body(), None) == body()


def test_openai_requests_carry_the_key_of_their_repeated_part():
    openai = provider_for("openai/gpt-4o-mini")
    sent = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    assert openai.cache_request(sent, stable()) == {**sent, "prompt_cache_key": "refed-k"}
    assert openai.cache_request(sent, None) == sent
    # a provider that takes neither marks nor a key is sent what it was
    assert provider_for("ollama_chat/llama3.1").cache_request(sent, stable()) == sent


def test_prompt_cache_false_asks_for_nothing():
    def cache(model: str, **kw):
        return cache_provider(LMSpec(model=model, **kw), provider_for(model))

    assert cache("anthropic/claude-haiku-4-5") is provider_for("anthropic/x")
    assert cache("openai/gpt-4o-mini") is provider_for("openai/x")
    assert cache("anthropic/claude-haiku-4-5", prompt_cache=False) is None
    assert cache("ollama_chat/llama3.1") is None


class _Recorder:
    def __init__(self):
        self.sent = []

    def stream(self, request):
        self.sent.append(request)
        return request


def test_the_transport_rewrites_chat_requests_made_under_a_stable_prompt_only():
    from dspy._vendor.lm15.transports import TransportRequest

    inner = _Recorder()
    transport = PromptCacheTransport(inner, provider_for("anthropic/x"))
    chat = TransportRequest("POST", "http://h/v1/messages", body=json.dumps(body()).encode())
    batch = TransportRequest("POST", "http://h/v1/messages/batches", body=json.dumps(body()).encode())
    transport.stream(chat)
    _, begun = _begin(object(), {}, False, CallTag(stable=stable()))  # a request under way, its adapter's tag handed
    try:
        transport.stream(chat)
        transport.stream(batch)
    finally:
        _end(begun)
    plain, rewritten, other = (json.loads(r.body) for r in inner.sent)
    assert marks(plain) == [] and marks(rewritten) == [SYSTEM, DEMO_A, REFERENCE] and marks(other) == []
    # a batch knows the request by what it asks: the same with the cache's marks or without (a run resumed with
    # prompt_cache turned off, or made before it was on, finds the answers its batches hold)
    from refed_dspy.clients.prompt_cache import asked_body
    from refed_dspy.launch.batch.broker import request_hash

    sent = inner.sent[1]
    assert sent.body != chat.body and request_hash(sent.url, asked_body(sent)) == request_hash(chat.url, chat.body)
    assert asked_body(chat) == chat.body
