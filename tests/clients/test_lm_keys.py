import pytest

from refed_dspy.cli import main
from refed_dspy.clients.keys import api_key_env
from refed_dspy.clients.lm import build_lm
from refed_dspy.config import LMSpec
from refed_dspy.errors import MissingKeyError


def test_key_variable_inferred_from_provider():
    assert api_key_env(LMSpec(model="openai/gpt-4o-mini")) == "OPENAI_API_KEY"
    assert api_key_env(LMSpec(model="anthropic/claude-3-5-haiku-latest")) == "ANTHROPIC_API_KEY"
    assert api_key_env(LMSpec(model="azure/my-deployment")) == "AZURE_API_KEY"
    assert api_key_env(LMSpec(model="ollama_chat/llama3.1")) is None
    assert api_key_env(LMSpec(model="openai/x", api_key_env="")) is None
    assert api_key_env(LMSpec(model="openai/x", api_key_env="MY_KEY")) == "MY_KEY"


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
    lm = build_lm(
        LMSpec(model="openai/local", api_base="http://127.0.0.1:9/v1", api_key_env="REFED_TEST_KEY", max_tokens=77)
    )
    assert lm.kwargs["api_base"] == "http://127.0.0.1:9/v1" and lm.kwargs["api_key"] == "sk-abc"
    assert lm.kwargs["max_tokens"] == 77


def test_key_variables_come_from_litellm_without_touching_the_environment(monkeypatch):
    import os

    from refed_dspy.clients.keys import provider_key_names

    before = dict(os.environ)
    assert api_key_env(LMSpec(model="together_ai/meta-llama/Llama-3-8b")) == "TOGETHERAI_API_KEY"  # not TOGETHER_AI_
    assert api_key_env(LMSpec(model="gemini/gemini-2.5-flash")) == "GEMINI_API_KEY"
    assert "GOOGLE_API_KEY" in provider_key_names("gemini/gemini-2.5-flash")  # LiteLLM reads either
    monkeypatch.setenv("GOOGLE_API_KEY", "g")
    assert api_key_env(LMSpec(model="gemini/gemini-2.5-flash")) == "GOOGLE_API_KEY"  # the one that is set
    assert api_key_env(LMSpec(model="xai/grok-4")) == "XAI_API_KEY"
    assert api_key_env(LMSpec(model="somecloud/model")) == "SOMECLOUD_API_KEY"  # a provider LiteLLM does not know
    monkeypatch.delenv("GOOGLE_API_KEY")
    assert dict(os.environ) == before
