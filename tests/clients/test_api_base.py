"""`api_base` as LiteLLM takes it for each provider, given to each client in the form it expects."""

from __future__ import annotations

import dspy
import pytest

from refed_dspy.clients.destination import endpoint_of
from refed_dspy.clients.lm import build_lm, fit_api_base
from refed_dspy.config.lm import LMSpec
from refed_dspy.launch.batch.api import client_for_spec
from refed_dspy.providers.registry import call_url, host_form, provider_for
from refed_dspy.tracking.mlflow_runs import logged_lm

SPELLINGS = ["http://h:8", "http://h:8/", "http://h:8/v1", "http://h:8/v1/", "http://h:8/v1/messages"]


@pytest.mark.parametrize("base", SPELLINGS)
def test_an_anthropic_api_base_is_the_host_however_written(base):
    assert host_form("anthropic/claude-haiku-4-5", base) == "http://h:8"
    assert provider_for("anthropic/claude-haiku-4-5").native_base(base) == "http://h:8/v1"  # lm15 appends /messages
    assert call_url("anthropic/claude-haiku-4-5", base) == "http://h:8/v1/messages"


def test_other_providers_keep_their_api_base_as_written():
    assert host_form("openai/x", "http://h:8/v1/") == "http://h:8/v1"
    assert call_url("openai/x", "http://h:8/v1") == "http://h:8/v1/chat/completions"
    assert call_url("openai/x", None) == "https://api.openai.com/v1/chat/completions"
    assert call_url("anthropic/x", None) == "https://api.anthropic.com/v1/messages"
    assert host_form("ollama_chat/llama3.1", "http://h:11434/v1") == "http://h:11434/v1"
    assert call_url("groq/llama-3.1-8b", None) == "groq's default endpoint"  # not OpenAI's, though its format


@pytest.mark.parametrize("base", SPELLINGS)
def test_each_client_gets_the_form_it_expects(base):
    # DSPy's own client (lm15) appends /messages: it gets the host with /v1, whether the LM carries engines of its own
    # (its requests ask Anthropic to cache their prompts) or DSPy picks one
    for cache in (True, False):
        spec = LMSpec(model="anthropic/claude-haiku-4-5", api_base=base, api_key_env="", prompt_cache=cache)
        assert endpoint_of(build_lm(spec)) == "http://h:8/v1"
    # headers send the call through LiteLLM, which appends /v1/messages: it gets the host
    lm = dspy.LM("anthropic/claude-haiku-4-5", api_base=base, api_key="k", headers={"x": "y"})
    assert fit_api_base(lm).kwargs["api_base"] == "http://h:8"
    # a program logged with it, and the batch API
    assert logged_lm(LMSpec(model="anthropic/claude-haiku-4-5", api_base=base)).kwargs["api_base"] == "http://h:8/v1"
    batches = client_for_spec(LMSpec(model="anthropic/claude-haiku-4-5", api_base=base), "k", "teacher")
    assert batches.url("/messages/batches") == "http://h:8/v1/messages/batches"


def test_with_an_endpoint_variable_set_each_client_still_gets_its_form(monkeypatch):
    """With ANTHROPIC_BASE_URL set, DSPy hands an LM of its own engine to LiteLLM (it keeps such gateways), while every
    LM build_lm makes is on engines of refed's, served by lm15 with the endpoint it was told, in the form lm15 takes
    (the endpoint written in the config or read from the variable); DSPy's own LM gets LiteLLM's form."""
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://h:8")
    for base in ("http://h:8/v1", None):
        spec = LMSpec(model="anthropic/claude-haiku-4-5", api_base=base, api_key_env="", prompt_cache=False)
        for lm in (build_lm(spec), build_lm(spec, max_connections=8)):
            assert endpoint_of(lm) == "http://h:8/v1"  # lm15 appends /messages
    lm = dspy.LM("anthropic/claude-haiku-4-5", api_base="http://h:8/v1", api_key="k")
    assert fit_api_base(lm).kwargs["api_base"] == "http://h:8"  # LiteLLM appends /v1/messages


def test_openai_compatible_api_base_is_passed_on():
    for cache in (True, False):
        lm = build_lm(
            LMSpec(model="openai/local", api_base="http://127.0.0.1:9/v1", api_key_env="", prompt_cache=cache)
        )
        assert endpoint_of(lm) == "http://127.0.0.1:9/v1"
