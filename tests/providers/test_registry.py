"""The providers' registry: every provider file is found and registers its providers, each model prefix leads to its
provider, a prefix no file registers gets a provider that knows nothing, and a provider added in one module (toy_provider.py)
is asked like the others by the rest of refed."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import pytest

import refed_dspy.providers as providers
from refed_dspy.adapters import choose_adapter, schema_for
from refed_dspy.config.lm import LMSpec
from refed_dspy.engine.failures import Failure, explain
from refed_dspy.errors import ConfigError, KeyProviderError
from refed_dspy.providers import DIALECTS, PROVIDERS, Provider, provider_for, provider_named
from refed_dspy.providers.dialects import dialect_for
from refed_dspy.providers.keys import check_key_goes_to_its_provider, host_provider
from refed_dspy.providers.registry import batch_provider, call_url, dialects

FAMILIES = {"openai", "openai_compatible", "azure", "anthropic", "google", "ollama", "llamacpp"}


def _provider_files() -> list[str]:
    return [
        m.name
        for m in pkgutil.iter_modules(providers.__path__)
        if m.name not in providers.PIECES and not m.name.startswith("_")
    ]


def test_every_provider_file_is_found_and_registers_its_providers():
    files = _provider_files()
    assert set(files) >= FAMILIES, sorted(FAMILIES - set(files))
    held = {}
    for name in files:
        module = importlib.import_module(f"refed_dspy.providers.{name}")
        mine = [value for value in vars(module).values() if isinstance(value, Provider)]
        assert mine, f"providers/{name}.py registers no provider"
        for provider in mine:
            assert PROVIDERS.get(provider.name) is provider, f"{name}.py: {provider.name} is not the registered one"
            held.setdefault(provider.name, name)
    assert sorted(held) == sorted(PROVIDERS.names()), "a registered provider comes from no provider file"


@pytest.mark.parametrize(
    "model, name",
    [
        ("gpt-4o-mini", "openai"),  # a bare name: OpenAI, as LiteLLM assumes
        ("openai/smollm2", "openai"),
        ("text-completion-openai/gpt-3.5-turbo-instruct", "text-completion-openai"),
        ("azure/my-deployment", "azure"),
        ("azure_ai/gpt-4o", "azure_ai"),
        ("anthropic/claude-haiku-4-5", "anthropic"),
        ("gemini/gemini-2.5-flash", "gemini"),
        ("vertex_ai/gemini-2.5-flash", "vertex_ai"),
        ("ollama/llama3.1", "ollama"),
        ("ollama_chat/llama3.1", "ollama"),
        ("hosted_vllm/Qwen/Qwen2.5-7B", "hosted_vllm"),
        ("lm_studio/qwen", "lm_studio"),
        ("groq/llama-3.1-8b-instant", "groq"),
        ("together_ai/meta-llama/Llama-3-8b", "together_ai"),
        ("openrouter/openai/gpt-4o-mini", "openrouter"),
        ("deepseek/deepseek-chat", "deepseek"),
        ("xai/grok-3", "xai"),
        ("cohere_chat/command-r", "cohere"),
        ("mistral/mistral-small", "mistral"),
        ("fireworks_ai/llama", "fireworks_ai"),
    ],
)
def test_provider_for_a_model_is_its_prefixs_provider(model, name):
    assert provider_for(model) is provider_named(name)


def test_every_registered_prefix_leads_to_its_provider_and_no_prefix_has_two():
    for provider in PROVIDERS.values():
        for prefix in provider.prefixes:
            assert provider_for(f"{prefix}/some-model") is provider
    with pytest.raises(ValueError, match="model prefix 'openai' is registered already"):
        PROVIDERS.register(Provider(name="impostor", prefixes=("openai",)))
    assert "impostor" not in PROVIDERS


def test_the_local_llama_cpp_server_is_reached_through_openais_prefix():
    llamacpp = provider_named("llamacpp")
    assert llamacpp.prefixes == () and llamacpp.keyless and llamacpp.dialect.name == "full"
    model = llamacpp.model_for("smollm2")
    assert model == "openai/smollm2" and provider_for(model) is provider_named("openai")
    assert llamacpp.served_port(model, "http://127.0.0.1:8080/v1", "smollm2") == 8080
    assert llamacpp.served_port(model, "http://10.0.0.2:8080/v1", "smollm2") is None  # not this machine
    assert llamacpp.api_base_at("http://127.0.0.1:8080") == "http://127.0.0.1:8080/v1"


def test_an_unknown_prefix_gets_a_provider_that_knows_nothing_but_its_name():
    provider = provider_for("bedrock/amazon.nova-pro-v1:0")
    assert (provider.name, provider.prefixes, provider.wire, provider.batch, provider.prefix_cache) == (
        "bedrock",
        ("bedrock",),
        None,
        None,
        None,
    )
    assert (provider.hosts, provider.keyless, provider.dialect.name) == ((), False, "minimal")
    assert provider.key_variables == ()  # LiteLLM's table names only the secret its client signs with: no key
    assert "bedrock" not in PROVIDERS
    assert call_url("bedrock/amazon.nova-pro-v1:0", None) == "bedrock's default endpoint"
    with pytest.raises(ConfigError, match="provider 'bedrock' is not a known provider; available: openai, azure, "):
        provider_named("bedrock")


def test_the_dialects_are_the_providers_in_the_configs_order():
    assert DIALECTS == ("full", "openai", "anthropic", "gemini", "minimal") == tuple(dialects())
    assert {provider_for(m).dialect.name for m in ("openai/x", "azure/x", "anthropic/x", "gemini/x")} == {
        "openai",
        "anthropic",
        "gemini",
    }


@pytest.fixture
def toy():
    """The toy provider, registered by importing its module, and unregistered after the test."""
    assert "toy" not in PROVIDERS
    sys.modules.pop("toy_provider", None)
    module = importlib.import_module("toy_provider")
    yield module.TOY
    PROVIDERS.unregister("toy")
    assert provider_for("toy/m").wire is None and PROVIDERS.for_prefix("toy") is None


def test_a_provider_added_in_one_module_is_asked_like_the_others(toy):
    assert provider_for("toy_chat/m") is toy and provider_named("toy") is toy
    assert call_url("toy/m", None) == "https://api.toy.example/v1/chat/completions"
    assert dialect_for("toy/m", None) == ("toy", "Toy takes no patterns nor string lengths")
    choice = choose_adapter(LMSpec(model="toy/m"))
    assert (choice.mode, choice.dialect) == ("chat", "toy")  # no schema table: DSPy's chat format
    schema = {"type": "object", "properties": {"a": {"type": "string", "pattern": "^x", "maxLength": 9}}}
    said = "Must be at most 9 characters, matching /^x/."
    assert schema_for(schema, "toy")["properties"]["a"] == {"type": "string", "description": said}
    assert host_provider("api.toy.example") == "toy" and host_provider("api.toy.example.com") is None
    with pytest.raises(KeyProviderError, match="api.toy.example"):  # OpenAI's key to the toy's host
        check_key_goes_to_its_provider(
            LMSpec(model="openai/gpt-4o-mini", api_base="https://api.toy.example/v1", api_key_env="OPENAI_API_KEY"),
            "teacher",
        )
    line = explain(Failure("unknown_provider", "x"), LMSpec(model="nope/m"), "teacher", 0)
    assert "; toy/<name>" in line
    with pytest.raises(ConfigError, match=r"a batch API \(OpenAI, Azure OpenAI, Anthropic\); 'toy/m' \(toy\)"):
        batch_provider(LMSpec(model="toy/m"), "teacher")
