"""Registries of the things a config names by a string: methods, filters, optimizers.

Each kind has one package with one module per entry; importing the package imports every module in it,
and each module registers its entry with `@REGISTRY.register`. So adding a method, a filter or an optimizer
is adding one file, and the names a config accepts are the registry's. An entry registered from your own
code (a method of yours) is accepted the same way; a package of yours that declares its modules in the entry-point
group `refed_dspy.plugins` has them imported by refed_dspy.config (load_plugins), so the CLI knows its entries too.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
from collections.abc import Iterable, Iterator
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from refed_dspy.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind, listed by `rank` (then name). `kind` names them in messages ("method")."""

    def __init__(self, kind: str, field: str):
        self.kind = kind
        self.field = field  # the config field that names an entry, for messages ("synthesis.method")
        self._entries: dict[str, T] = {}

    def register(self, entry: Any) -> Any:
        """Add `entry` (a class is instantiated once; a pydantic model class is kept as the class) under its
        `name`; returns what was given, so it works as a class decorator. A name taken by another entry is
        refused."""
        name = _name_of(entry)
        if not isinstance(name, str) or not name:
            raise TypeError(f"a {self.kind} needs a non-empty string `name`, {entry!r} has {name!r}")
        value = entry() if isinstance(entry, type) and not issubclass(entry, BaseModel) else entry
        held = self._entries.get(name)
        if held is not None and type(held) is not type(value) and held is not value:
            raise ValueError(f"{self.kind} '{name}' is registered already (by {_origin(held)})")
        self._entries[name] = value
        return entry

    def unregister(self, name: str) -> None:
        """Remove an entry (for tests and plug-ins that replace one of ours)."""
        self._entries.pop(name, None)

    def get(self, name: str) -> T:
        """The entry called `name`; ConfigError naming the registered ones otherwise."""
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(
                f"{self.field} '{name}' is not a known {self.kind}; available: {', '.join(self.names())}"
            ) from None

    def names(self) -> tuple[str, ...]:
        """Every registered name, in listing order."""
        return tuple(name for name, _ in sorted(self._entries.items(), key=lambda kv: (_rank(kv[1]), kv[0])))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def items(self) -> list[tuple[str, T]]:
        return [(name, self._entries[name]) for name in self.names()]

    def values(self) -> list[T]:
        return [self._entries[name] for name in self.names()]


def load_package(package: str, path: Any, skip: tuple[str, ...] = ()) -> None:
    """Import every module of a package (its entries register themselves), except those in `skip`."""
    for info in sorted(pkgutil.iter_modules(path), key=lambda i: i.name):
        if not info.name.startswith("_") and info.name not in skip:
            importlib.import_module(f"{package}.{info.name}")


PLUGIN_GROUP = "refed_dspy.plugins"


def load_plugins(found: Iterable[Any] | None = None) -> list[str]:
    """Import the modules that installed packages declare in the entry-point group `refed_dspy.plugins` (their
    methods, filters and optimizers register themselves on import); returns their names. `found`: the entry points
    to load instead of the installed ones. A plugin that does not import is a ConfigError naming it."""
    loaded = []
    for entry in importlib.metadata.entry_points(group=PLUGIN_GROUP) if found is None else found:
        try:
            entry.load()
        except Exception as err:  # noqa: BLE001 - a broken plugin is the user's to fix: one line
            raise ConfigError(
                f"the refed plugin {entry.name!r} ({entry.value}, entry-point group {PLUGIN_GROUP}) does "
                f"not load: {type(err).__name__}: {err}"
            ) from None
        loaded.append(entry.name)
    return loaded


def _name_of(entry: Any) -> Any:
    if isinstance(entry, type) and issubclass(entry, BaseModel):
        field = entry.model_fields.get("name")  # a pydantic model names itself by its `name` field's default
        return field.default if field is not None else None
    return getattr(entry, "name", None)


def _rank(entry: Any) -> int:
    return int(getattr(entry, "rank", 100))


def _origin(entry: Any) -> str:
    cls = entry if isinstance(entry, type) else type(entry)
    return f"{cls.__module__}.{cls.__qualname__}"
