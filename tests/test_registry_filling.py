"""A registry that names the package filling it imports that package, and the installed plugins, on the first
question asked of it (refed_dspy.registry): the config reads registries without importing what fills them."""

from __future__ import annotations

import sys

import pytest

import refed_dspy.registry as registry
from refed_dspy.errors import ConfigError
from refed_dspy.registry import FILTERS, METHODS, OPTIMIZERS, TARGETS, Registry

HOLDER = """
from refed_dspy.registry import Registry

THINGS = Registry("thing", "x.thing", filled_by="things_pkg")
"""
FILLER = """
from holder import THINGS

SEEN_WHILE_FILLING = THINGS.names()  # a question asked while the package imports: what is registered so far


class First:
    name = "first"
    rank = 1


THINGS.register(First)
THINGS.register(type("Second", (), {"name": "second", "rank": 2}))
"""


@pytest.fixture
def things(tmp_path, monkeypatch):
    (tmp_path / "holder.py").write_text(HOLDER)
    (tmp_path / "things_pkg.py").write_text(FILLER)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("holder", "things_pkg"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    plugins = []
    monkeypatch.setattr(registry, "load_plugins", lambda: plugins.append("loaded") or [])
    monkeypatch.setitem(registry._plugins, "loaded", False)
    import holder

    yield holder.THINGS, plugins
    for name in ("holder", "things_pkg"):
        sys.modules.pop(name, None)


def test_the_first_question_imports_the_package_that_fills_the_registry_and_the_plugins(things):
    held, plugins = things
    assert "things_pkg" not in sys.modules and plugins == []  # made, not filled
    assert "first" in held
    assert "things_pkg" in sys.modules and plugins == ["loaded"]
    assert held.names() == ("first", "second") and held.get("second").name == "second"
    assert sys.modules["things_pkg"].SEEN_WHILE_FILLING == ()
    assert "third" not in held and len(held) == 2 and plugins == ["loaded"]  # filled once


def test_registering_asks_nothing_and_an_unknown_name_is_one_line(things):
    held, plugins = things
    held.register(type("Early", (), {"name": "early"}))
    assert "things_pkg" not in sys.modules and plugins == []
    with pytest.raises(ConfigError, match=r"x.thing 'nope' is not a known thing; available: first, second, early"):
        held.get("nope")


def test_a_registry_with_no_package_is_filled_by_whoever_registers():
    plain = Registry("thing", "x.thing")
    assert "a" not in plain and plain.names() == ()


def test_the_config_registries_name_their_packages():
    assert (METHODS.filled_by, FILTERS.filled_by, OPTIMIZERS.filled_by, TARGETS.filled_by) == (
        "refed_dspy.methods",
        "refed_dspy.filters",
        "refed_dspy.optimizers.teleprompters",
        "refed_dspy.optimizers.metrics",
    )
    assert TARGETS.names() == ("respond", "instructions", "pipeline") and "refed" in METHODS
