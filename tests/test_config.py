import pytest

from refed_dspy.cli import main
from refed_dspy.clients.lm import build_lm
from refed_dspy.config import (
    apply_overrides,
    config_from_dict,
    fingerprint,
    fingerprint_diff,
    load_config,
    mask_secrets,
    to_toml,
)
from refed_dspy.errors import ConfigError


def test_defaults_are_valid_and_documented():
    cfg = load_config()
    assert cfg.synthesis.method == "refed" and cfg.synthesis.instructions_per_feature == 10
    from refed_dspy.filters import FILTERS

    models = [f.annotation for f in type(cfg).model_fields.values() if hasattr(f.annotation, "model_fields")]
    assert len(models) >= 8 and type(cfg).model_fields["filters"].description
    for model in [*models, *FILTERS.values()]:
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"


@pytest.mark.parametrize(
    "override, expected",
    [
        ("synthesis.sizee=3", "unknown key 'sizee' in [synthesis]; did you mean 'size'?"),
        ("teacher.temprature=1", "unknown key 'temprature' in [teacher]; did you mean 'temperature'?"),
        ("teachr.model='x'", "unknown key 'teachr'; did you mean 'teacher'?"),
        ("synthesis.size='many'", "synthesis.size: expected int, got 'many'"),
        ("synthesis.concurrency=0", "synthesis.concurrency: input should be greater than 0, got 0"),
        ("teacher.extra={api_key='sk-1'}", "teacher.extra: 'api_key' looks like a secret"),
    ],
)
def test_validation_messages(override, expected):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_set_none_unsets_an_optional_field_a_config_file_set(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[synthesis]\nmax_cost_usd = 5.0\nmax_calls = 100\n[seeds]\nsource = "x.jsonl"\n')
    c = load_config(cfg, ["synthesis.max_cost_usd=none", "synthesis.max_calls=NULL", "seeds.source=None"])
    assert c.synthesis.max_cost_usd is None and c.synthesis.max_calls is None and c.seeds.source is None
    assert load_config(None, ["seeds.source='none'"]).seeds.source == "none"  # quoted: the string
    with pytest.raises(ConfigError) as err:
        load_config(cfg, ["synthesis.size=none"])
    assert str(err.value) == "invalid config: synthesis.size: cannot be unset (none): expected int"
    # in a table of free-form values `none` is a value a provider takes (reasoning_effort), not an unset field
    assert load_config(None, ["teacher.extra.reasoning_effort=none"]).teacher.extra == {"reasoning_effort": "none"}
    priced = load_config(None, ['prices."openai/x".input_usd_per_mtok=none'])  # a table of sections: a field unset
    assert priced.prices["openai/x"].input_usd_per_mtok is None


def test_file_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[synthesis\nsize = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.toml")


def test_overrides_parse_toml_values_and_strings():
    data = apply_overrides(
        {}, ["synthesis.size=12", "teacher.model=openai/gpt-4o", "teacher.temperature=0.5", "run.progress=false"]
    )
    assert data == {
        "synthesis": {"size": 12},
        "teacher": {"model": "openai/gpt-4o", "temperature": 0.5},
        "run": {"progress": False},
    }
    with pytest.raises(ConfigError, match="section.key=value"):
        apply_overrides({}, ["size12"])


def test_swapping_teacher_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-1")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test-2")
    a = tmp_path / "a.toml"
    b = tmp_path / "b.toml"
    a.write_text('[teacher]\nmodel = "openai/gpt-4o-mini"\n[synthesis]\nsize = 5\n')
    b.write_text('[teacher]\nmodel = "anthropic/claude-3-5-haiku-latest"\n[synthesis]\nsize = 5\n')
    la, lb = build_lm(load_config(a).teacher), build_lm(load_config(b).teacher)
    assert (la.model, lb.model) == ("openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-latest")
    assert la.kwargs["api_key"] == "sk-test-1" and lb.kwargs["api_key"] == "sk-test-2"


def test_fingerprint_ignores_size_and_concurrency():
    a = load_config(None, ["synthesis.size=10", "synthesis.concurrency=4"])
    b = load_config(None, ["synthesis.size=99", "synthesis.concurrency=64"])
    c = load_config(None, ["teacher.model=openai/gpt-4o"])
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint_diff(fingerprint(a), fingerprint(c)) == [
        "teacher.model: 'openai/gpt-4o-mini' -> 'openai/gpt-4o'"
    ]
    # a run dir made before a field existed matches while that field keeps its default
    older = fingerprint(a)
    del older["synthesis"]["reflection"]
    assert fingerprint_diff(older, fingerprint(a)) == []
    d = load_config(None, ["synthesis.reflection=response"])
    assert fingerprint_diff(older, fingerprint(d)) == ["synthesis.reflection: None -> 'response'"]


def test_mask_and_toml_roundtrip():
    assert mask_secrets({"hf_token": "x", "max_tokens": 3, "api_key_env": "OPENAI_API_KEY"}) == {
        "hf_token": "***",
        "max_tokens": 3,
        "api_key_env": "OPENAI_API_KEY",
    }
    from refed_dspy.settings import tomllib

    cfg = load_config(None, ["synthesis.size=7"])
    assert config_from_dict(tomllib.loads(to_toml(cfg))) == cfg


def test_config_show_cli(tmp_path, capsys):
    assert main(["config", "show", "--set", "synthesis.size=42"]) == 0
    out = capsys.readouterr().out
    assert "size = 42" in out and "[teacher]" in out
    assert main(["config", "show", "--set", "synthesis.bogus=1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown key 'bogus'" in err


def test_filters_tables_roundtrip_through_toml(tmp_path):
    """[[filters]] tables (as the README shows them) have None fields; the run's config.toml must still write."""
    from refed_dspy.settings import tomllib

    path = tmp_path / "run.toml"
    path.write_text(
        '[[filters]]\nname = "judge_prefers_improved"\n[[filters]]\nname = "rouge_diversity"\nthreshold = 0.7\n'
    )
    cfg = load_config(path)
    text = to_toml(cfg)
    assert "rouge_diversity" in text and "null" not in text
    assert config_from_dict(tomllib.loads(text)) == cfg


@pytest.mark.parametrize(
    "toml_text, expected",
    [
        ("", 0.0),
        ('[judge]\nmodel = "openai/gpt-4o"\n', 0.0),
        ('[judge]\nmodel = "openai/gpt-4o"\ntemperature = 0.3\n', 0.3),
        ("[teacher]\ntemperature = 0.9\n", 0.0),
    ],
)
def test_judge_temperature_defaults_to_zero(tmp_path, toml_text, expected):
    path = tmp_path / "c.toml"
    path.write_text(toml_text)
    assert load_config(path).judge.temperature == expected
    assert load_config(None, ["judge.model='openai/gpt-4o'"]).judge.temperature == 0.0


@pytest.mark.parametrize(
    "override, expected",
    [
        ("synthesis.size=true", "synthesis.size: expected int, got True"),
        ("synthesis.max_cost_usd=true", "synthesis.max_cost_usd: expected float | None, got True"),
        ("judging.concurrency=false", "judging.concurrency: expected int, got False"),
    ],
)
def test_booleans_are_not_numbers(override, expected):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert expected in str(err.value)
    assert load_config(None, ["synthesis.max_cost_usd=2"]).synthesis.max_cost_usd == 2.0  # an int still fills a float


def test_debug_keeps_the_exit_code(capsys):
    assert main(["--debug", "config", "show", "--set", "synthesis.size=true"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("refed: error: invalid config")


def test_a_run_dir_config_written_before_filters_had_their_own_models_still_reads(tmp_path):
    """Older config.toml files list every [[filters]] table with `field` and `seed` at their defaults."""
    from refed_dspy.config import run_config
    from refed_dspy.store.rundir import RunDir

    (tmp_path / "config.toml").write_text(
        '[[filters]]\nname = "dedup"\nthreshold = 0.8\nfield = "response"\nseed = 0\n'
        '[[filters]]\nname = "judge_prefers_improved"\nfield = "response"\nseed = 0\n'
        '[[filters]]\nname = "random_subset"\nk = 3\nfield = "response"\nseed = 5\n'
    )
    filters = run_config(RunDir(tmp_path)).filters
    assert [(f.name, f.model_dump(exclude_none=True)) for f in filters] == [
        ("dedup", {"name": "dedup", "threshold": 0.8}),
        ("judge_prefers_improved", {"name": "judge_prefers_improved"}),
        ("random_subset", {"name": "random_subset", "k": 3, "seed": 5}),
    ]
    with pytest.raises(ConfigError, match="unknown key 'seed' in \\[filters.0\\]"):  # a value the filter would not use
        load_config(None, ['filters=[{name="min_score", min_score=6, seed=1}]'])
