from pathlib import Path

import pytest
from cli_helpers import run_refed, sets

from refed_dspy.cli import main
from refed_dspy.clients.destination import endpoint_of
from refed_dspy.clients.lm import build_lm
from refed_dspy.config import LMSpec
from refed_dspy.errors import ConfigError, KeyProviderError, MissingKeyError
from refed_dspy.providers.keys import check_key, check_key_goes_to_its_provider, key_provider

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_key_variable_inferred_from_provider():
    assert LMSpec(model="openai/gpt-4o-mini").key_variable() == "OPENAI_API_KEY"
    assert LMSpec(model="anthropic/claude-3-5-haiku-latest").key_variable() == "ANTHROPIC_API_KEY"
    assert LMSpec(model="azure/my-deployment").key_variable() == "AZURE_API_KEY"
    assert LMSpec(model="ollama_chat/llama3.1").key_variable() is None
    assert LMSpec(model="openai/x", api_key_env="").key_variable() is None
    assert LMSpec(model="openai/x", api_key_env="MY_KEY").key_variable() == "MY_KEY"


def test_a_model_name_where_a_section_belongs_is_one_clear_error():
    """refed_dspy.build_lm("openai/gpt-4o-mini"), as dspy.LM is called: a ConfigError saying what it takes (it was
    an AttributeError from inside)."""
    with pytest.raises(ConfigError, match=r"build_lm takes a section of the config .* got str 'openai/gpt-4o-mini'"):
        build_lm("openai/gpt-4o-mini")


def test_missing_key_error_names_the_variable():
    with pytest.raises(MissingKeyError) as err:
        build_lm(LMSpec(model="openai/gpt-4o-mini", api_key_env="REFED_TEST_KEY"), "teacher")
    assert "$REFED_TEST_KEY" in str(err.value) and "export REFED_TEST_KEY=" in str(err.value)


def test_missing_key_cli_exit_2_before_any_work(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code = main(["synthesize", "--set", f"run.dir='{run_dir}'", "--set", "synthesis.size=3"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().count("\n") == 0 and "$OPENAI_API_KEY" in err and "Traceback" not in err
    assert not run_dir.exists()


def test_lm_gets_api_base_and_key_from_env(monkeypatch):
    monkeypatch.setenv("REFED_TEST_KEY", "sk-abc")
    spec = LMSpec(model="openai/local", api_base="http://127.0.0.1:9/v1", api_key_env="REFED_TEST_KEY", max_tokens=77)
    plain = build_lm(spec.model_copy(update={"prompt_cache": False}))
    lm = build_lm(spec)  # its requests carry a prompt_cache_key
    for one in (plain, lm):  # engines of its own either way: they hold endpoint and key
        assert endpoint_of(one) == "http://127.0.0.1:9/v1" and list(one.engine.config.api_keys.values()) == ["sk-abc"]
        assert one.kwargs["max_tokens"] == 77 and "api_key" not in one.kwargs
    assert "api_key" not in spec.lm_kwargs()  # the section's arguments hold no key


def test_key_variables_come_from_litellm_without_touching_the_environment(monkeypatch):
    import os

    from refed_dspy.providers.keys import provider_key_names

    before = dict(os.environ)
    assert LMSpec(model="together_ai/meta-llama/Llama-3-8b").key_variable() == "TOGETHERAI_API_KEY"  # not TOGETHER_AI_
    assert LMSpec(model="gemini/gemini-2.5-flash").key_variable() == "GEMINI_API_KEY"
    assert "GOOGLE_API_KEY" in provider_key_names("gemini/gemini-2.5-flash")  # LiteLLM reads either
    monkeypatch.setenv("GOOGLE_API_KEY", "g")
    assert LMSpec(model="gemini/gemini-2.5-flash").key_variable() == "GOOGLE_API_KEY"  # the one that is set
    assert LMSpec(model="xai/grok-4").key_variable() == "XAI_API_KEY"
    assert LMSpec(model="somecloud/model").key_variable() == "SOMECLOUD_API_KEY"  # a provider LiteLLM does not know
    monkeypatch.delenv("GOOGLE_API_KEY")
    assert dict(os.environ) == before


ANTHROPIC_WITH_OPENAI_KEY = ["teacher.model='anthropic/claude-haiku-4-5'", "teacher.api_key_env='OPENAI_API_KEY'"]


@pytest.mark.parametrize("api_base", [None, "https://api.anthropic.com", "https://api.anthropic.com/v1"])
def test_another_providers_key_for_the_providers_endpoint_is_refused_before_any_call(tmp_path, api_base):
    """The OpenAI key is never sent to Anthropic: exit 2, one line naming both variables, no run dir, no call (the
    machine has no network: a call would fail otherwise)."""
    run_dir = tmp_path / "run"
    over = [*ANTHROPIC_WITH_OPENAI_KEY, f"run.dir='{run_dir}'"] + (
        [f"teacher.api_base='{api_base}'"] if api_base else []
    )
    code, _, err = run_refed(
        "synthesize", "--config", str(CONFIGS / "quickstart.toml"), *sets(over), env_extra={"OPENAI_API_KEY": "sk-x"}
    )
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "teacher.api_key_env = 'OPENAI_API_KEY' is openai's key" in err and "$ANTHROPIC_API_KEY" in err
    assert "refused before any call" in err and "sk-x" not in err
    assert not run_dir.exists()


def test_which_variable_is_whose_key():
    assert key_provider("OPENAI_API_KEY") == "openai" and key_provider("ANTHROPIC_API_KEY") == "anthropic"
    assert key_provider("TOGETHERAI_API_KEY") == "together_ai"  # LiteLLM's spelling of the provider, underscores aside
    assert key_provider("MY_TEAM_KEY") is None  # a name of one's own is nobody's key
    # the variables a provider's own docs name are its key, not only LiteLLM's (issue 51)
    documented = {
        "AZURE_OPENAI_API_KEY": "azure",
        "TOGETHER_API_KEY": "together_ai",
        "FIREWORKS_API_KEY": "fireworks_ai",
        "CO_API_KEY": "cohere",
        "HF_TOKEN": "huggingface",
        "ANTHROPIC_AUTH_TOKEN": "anthropic",
    }
    assert {name: key_provider(name) for name in documented} == documented
    refused = [
        LMSpec(model="openai/gpt-4o-mini", api_key_env="ANTHROPIC_API_KEY"),
        LMSpec(model="azure/dep", api_key_env="OPENAI_API_KEY", api_base="https://res.openai.azure.com"),
        LMSpec(model="openrouter/anthropic/claude-haiku-4-5", api_key_env="ANTHROPIC_API_KEY"),
    ]
    for spec in refused:
        with pytest.raises(KeyProviderError):
            check_key(spec, "teacher")
    allowed = [
        LMSpec(
            model="anthropic/claude-haiku-4-5", api_key_env="OPENAI_API_KEY", api_base="http://127.0.0.1:9"
        ),  # a proxy
        LMSpec(model="openai/x", api_key_env="ANTHROPIC_API_KEY", api_base="http://gateway.internal/v1"),
        LMSpec(model="gemini/gemini-2.5-flash", api_key_env="GOOGLE_API_KEY"),  # LiteLLM reads gemini's key there too
        LMSpec(model="anthropic/claude-haiku-4-5", api_key_env="MY_TEAM_KEY"),  # a name of one's own
        LMSpec(model="anthropic/claude-haiku-4-5", api_key_env=""),
    ]
    for spec in allowed:
        check_key_goes_to_its_provider(spec, "teacher")


def test_a_config_that_swaps_the_model_says_which_key_it_now_needs(tmp_path, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    code, _, err = run_refed(
        "synthesize",
        "--config",
        str(CONFIGS / "quickstart.toml"),
        *sets(["teacher.model='anthropic/claude-haiku-4-5'", f"run.dir='{tmp_path / 'run'}'"]),
        env_extra={"OPENAI_API_KEY": "sk-x"},
    )
    assert code == 2 and "needs an API key in $ANTHROPIC_API_KEY" in err and len(err.strip().splitlines()) == 1, err


def test_a_proxy_that_takes_the_pinned_key_still_runs(server_factory, tmp_path, monkeypatch):
    """A custom api_base is an endpoint of its own: a pinned variable of another provider may go there."""
    from conftest import run_overrides

    from refed_dspy.config import load_config
    from refed_dspy.synthesis.api import synthesize

    monkeypatch.setenv("OPENAI_API_KEY", "sk-proxy")
    srv = server_factory()
    host = srv.api_base.removesuffix("/v1")
    over = run_overrides(srv, tmp_path / "run", 3, **{"teacher.model": "'anthropic/claude-haiku-4-5'"})
    over += [f"teacher.api_base='{host}'", "teacher.api_key_env='OPENAI_API_KEY'", "seeds.limit=2"]
    assert synthesize(load_config(None, over))["status"] == "complete"


@pytest.mark.parametrize(
    "model, env, refused",
    [
        ("anthropic/claude-haiku-4-5", "OPENAI_API_KEY", True),
        ("openai/gpt-4o-mini", "ANTHROPIC_API_KEY", True),
        ("gpt-4o-mini", "ANTHROPIC_API_KEY", True),  # a bare name LiteLLM places at OpenAI
        ("claude-3-5-haiku-20241022", "ANTHROPIC_API_KEY", False),  # a bare name LiteLLM places at Anthropic
        ("claude-3-5-haiku-latest", "ANTHROPIC_API_KEY", False),  # a bare name it cannot place: not refused
        ("text-completion-openai/gpt-3.5-turbo-instruct", "OPENAI_API_KEY", False),  # OpenAI's family of prefixes
        ("mistral/codestral-latest", "CODESTRAL_API_KEY", False),  # a key of a provider refed does not place
    ],
)
def test_another_provider_s_key_is_refused_only_when_that_is_certain(model, env, refused):
    """Refused: the key's provider is known and the calls go to another's own endpoint. Passed: a model LiteLLM routes
    to the key's provider whatever its prefix says, one provider's family of prefixes, a key refed cannot place."""
    spec = LMSpec(model=model, api_key_env=env)
    if refused:
        with pytest.raises(KeyProviderError):
            check_key_goes_to_its_provider(spec, "teacher")
    else:
        check_key_goes_to_its_provider(spec, "teacher")
