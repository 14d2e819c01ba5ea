"""A layer of a config that puts another model in a role (`--set`, an experiment file over its base, a grid cell)
leaves the model settings of the layer below behind: a hosted teacher swapped into configs/experiment.toml as its
comments advise took the local model's 384-token limit (64 of 64 examples truncated) and its zero prices."""

from __future__ import annotations

from pathlib import Path

import pytest

from refed_dspy.config import load_config
from refed_dspy.config.load import forget_replaced_models
from refed_dspy.errors import ConfigError
from refed_dspy.experiments.config import cell_config, cells, load_experiment

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _advised_teacher(experiment: str) -> str:
    """The [teacher] table configs/experiment.toml's comments give, uncommented."""
    lines = experiment.splitlines()
    start = lines.index("#   [teacher]")
    table = []
    for line in lines[start:]:
        if not line.startswith("#   "):
            break
        table.append(line.removeprefix("#   ").split("#")[0].rstrip())
    return "\n".join(table)


@pytest.mark.parametrize("model", ["advised", "openai/gpt-4.1-mini"])
def test_a_teacher_swapped_into_the_shipped_experiment_takes_its_own_limit_and_prices(tmp_path, model):
    experiment = (CONFIGS / "experiment.toml").read_text()
    teacher = _advised_teacher(experiment)
    assert 'model = "openai/' in teacher and "api_base" in teacher, teacher
    if model != "advised":
        teacher = teacher.replace('"openai/gpt-5.6-luna"', f'"{model}"')
    (tmp_path / "local.toml").write_text((CONFIGS / "local.toml").read_text())
    (tmp_path / "experiment.toml").write_text(f"{teacher}\n\n{experiment}")
    _, base = load_experiment(tmp_path / "experiment.toml")
    config = cell_config(base, {})
    spec = config.teacher
    assert spec.model != "openai/smollm2" and spec.max_tokens is None and spec.temperature is None
    assert spec.output_limit >= 4096  # the model's own: 16,000 for gpt-5.6-luna, 4,096 for gpt-4.1-mini
    assert spec.input_usd_per_mtok is None and spec.output_usd_per_mtok is None and spec.extra == {}
    assert spec.api_base == "https://api.openai.com/v1" and spec.api_key_env == "OPENAI_API_KEY"
    assert config.judge.model == "openai/smollm2" and config.judge.max_tokens == 512  # the judge was not swapped


def test_a_grid_teacher_and_a_set_model_leave_the_base_models_settings_and_keep_its_server():
    _, base = load_experiment(CONFIGS / "experiment.toml")
    grid = {"teacher": [{"model": "openai/gpt-4.1-mini", "api_base": "http://127.0.0.1:8001/v1"}]}
    (cell,) = cells(grid, 1)
    spec = cell_config(base, cell.overrides(0)).teacher
    assert (spec.max_tokens, spec.input_usd_per_mtok, spec.extra) == (None, None, {})
    assert spec.api_base == "http://127.0.0.1:8001/v1" and spec.api_key_env == ""
    swapped = load_config(CONFIGS / "local.toml", ["teacher.model='openai/gpt-4.1-mini'"]).teacher
    assert (swapped.max_tokens, swapped.temperature, swapped.output_usd_per_mtok) == (None, None, None)
    assert swapped.api_base == "http://127.0.0.1:8080/v1" and swapped.api_key_env == ""  # its server stays
    # what the same layer sets stays, in whichever order; the same model keeps everything
    kept = load_config(CONFIGS / "local.toml", ["teacher.max_tokens=300", "teacher.model='openai/gpt-4.1-mini'"])
    assert kept.teacher.max_tokens == 300 and kept.teacher.input_usd_per_mtok is None
    same = load_config(CONFIGS / "local.toml", ["teacher.model='openai/smollm2'"]).teacher
    assert same.max_tokens == 512 and same.input_usd_per_mtok == 0.0 and same.extra == {"frequency_penalty": 0.5}


def test_forgetting_is_pure_and_only_for_a_role_whose_model_changes():
    below = {"teacher": {"model": "a", "max_tokens": 5, "api_base": "http://h/v1"}, "judge": {"max_tokens": 7}}
    assert forget_replaced_models(below, {"teacher": {"model": "b"}}) == {
        "teacher": {"model": "a", "api_base": "http://h/v1"},
        "judge": {"max_tokens": 7},
    }
    assert below["teacher"]["max_tokens"] == 5  # not changed
    assert forget_replaced_models(below, {"teacher": {"model": "a"}}) == below
    assert forget_replaced_models(below, {"judge": {"model": "openai/gpt-4o-mini"}}) == below  # the default model
    assert forget_replaced_models(below, {"judge": {"model": "c"}})["judge"] == {}
    with pytest.raises(ConfigError, match="'extra' is not a table"):  # the layer is read as before, errors too
        load_config(None, ["teacher.extra=1", "teacher.extra.top_p=2", "teacher.model='x'"])
