"""refed_dspy.config stands at the bottom of the house (issue 45): it imports no method, filter or optimizer, and the
names a config takes from their registries are still checked, by a program that imports nothing but the config."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ABOVE = ("refed_dspy.methods", "refed_dspy.filters", "refed_dspy.optimizers")


def named_above(folder: Path) -> list[str]:
    """Every place a module under `folder` names a package of ABOVE: an import statement anywhere (in a function, in
    a TYPE_CHECKING block) or a string (what importlib would import)."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names = [node.value]
            else:
                continue
            found += [f"{path.relative_to(folder)}:{node.lineno}: {n}" for n in names if n.startswith(ABOVE)]
    return found


def test_no_module_of_the_config_names_a_method_filter_or_optimizer():
    assert (ROOT / "refed_dspy" / "config" / "__init__.py").is_file()
    assert named_above(ROOT / "refed_dspy" / "config") == []


def test_the_check_finds_such_a_name(tmp_path):
    """The check itself can fail: an import in a function and a name importlib would take are both found."""
    (tmp_path / "bad.py").write_text(
        "import importlib\n\ndef f():\n    from refed_dspy.filters import FILTERS\n"
        "    importlib.import_module('refed_dspy.methods')\n"
    )
    assert len(named_above(tmp_path)) == 2


IMPORTS_ONLY_THE_CONFIG = """
import sys

import refed_dspy.config as config
from refed_dspy.errors import ConfigError

ABOVE = ("refed_dspy.methods", "refed_dspy.filters", "refed_dspy.optimizers")


def loaded():
    return sorted(m for m in sys.modules if m.startswith(ABOVE))


assert loaded() == [], loaded()
made = config.load_config(None, ["synthesis.method=reflection", "optimize.optimizer=gepa", "optimize.target=pipeline",
                                 'filters=[{name="length", min_words=3}]'])
assert (made.synthesis.method, made.optimize.optimizer, made.optimize.target) == ("reflection", "gepa", "pipeline")
assert type(made.filters[0]).__name__ == "Length" and made.filters[0].min_words == 3
assert {"refed_dspy.methods", "refed_dspy.filters", "refed_dspy.optimizers.teleprompters"} <= set(loaded())
for bad, said in [
    ("synthesis.method=refd", "synthesis.method: input should be 'refed', "),
    ("optimize.optimizer=mipro", "optimize.optimizer: input should be 'bootstrap', "),
    ("optimize.target=respnd", "optimize.target: input should be 'respond', 'instructions' or 'pipeline', got 'respnd'"),
    ('filters=[{name="lenght"}]', "filters.0.name: input should be 'judge_prefers_improved', "),
    ('filters=[{name="length"}]', "filters.0: filter 'length' needs min_words or max_words"),
]:
    try:
        config.load_config(None, [bad])
    except ConfigError as err:
        assert said in str(err), (bad, str(err))
    else:
        raise AssertionError(f"{bad} was accepted")
print("checked")
"""


def test_a_program_that_imports_only_the_config_gets_every_name_checked():
    """Importing the config loads none of the packages above it; validating a name loads the one that fills its
    registry (by name, as a plugin is found), so the names accepted and refused are the same as everywhere."""
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "true", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", IMPORTS_ONLY_THE_CONFIG], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "checked"
