"""Registries of the things a config names by a string: methods, filters, optimizers, optimize targets.

Each kind has one package; importing the package imports every module in it, and each module registers its entries
with `@REGISTRY.register` (one entry a module, but for the paper's family of methods: one table of switches in
refed_dspy.methods.reference_synthesis). So adding a method, a filter or an optimizer is adding one file, and the names
a config accepts are the registry's. An entry registered from your own
code (a method of yours) is accepted the same way; a package of yours that declares its modules in the entry-point
group `refed_dspy.plugins` has them imported too (load_plugins), so the CLI knows its entries.

The registries a config reads are defined here, at the bottom of the house, and filled from above: each names the
package that fills it (`filled_by`), and the first question asked of it imports that package by name, and the
installed plugins, the way plugins are found (importlib, not an import statement). So refed_dspy.config checks a name
without importing a method, a filter or an optimizer, and a program that imports only refed_dspy.config still gets
every registered name.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
import threading
from collections.abc import Iterable, Iterator
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from refed_dspy.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind, listed by `rank` (then name). `kind` names them in messages ("method"). With
    `filled_by` (a package's dotted name), the first question asked imports that package and the installed plugins,
    whose modules register the entries."""

    def __init__(self, kind: str, field: str, filled_by: str | None = None):
        self.kind = kind
        self.field = field  # the config field that names an entry, for messages ("synthesis.method")
        self.filled_by = filled_by
        self._entries: dict[str, T] = {}
        self._filled = filled_by is None
        self._filling = False
        self._lock = threading.RLock()  # one thread fills; a question from another waits until it is filled

    def _fill(self) -> None:
        """Import the package that fills this registry, and the plugins, once (a question asked while they import,
        by one of their own modules, is answered with what is registered so far)."""
        if self._filled:
            return
        with self._lock:
            if self._filled or self._filling:
                return
            self._filling = True
            try:
                importlib.import_module(self.filled_by)
                load_plugins_once()
                self._filled = True
            finally:
                self._filling = False

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
        self._fill()
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(
                f"{self.field} '{name}' is not a known {self.kind}; available: {', '.join(self.names())}"
            ) from None

    def names(self) -> tuple[str, ...]:
        """Every registered name, in listing order."""
        self._fill()
        return tuple(name for name, _ in sorted(self._entries.items(), key=lambda kv: (_rank(kv[1]), kv[0])))

    def __contains__(self, name: object) -> bool:
        self._fill()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._fill()
        return len(self._entries)

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def items(self) -> list[tuple[str, T]]:
        return [(name, self._entries[name]) for name in self.names()]

    def values(self) -> list[T]:
        return [self._entries[name] for name in self.names()]


# the registries a config's names are checked against, each filled by its package (see the module's docstring); the
# entries' types live in those packages: Method, the Filter models, Optimizer, and optimizers.metrics' Target
METHODS: Registry[Any] = Registry("method", "synthesis.method", filled_by="refed_dspy.methods")
FILTERS: Registry[Any] = Registry("filter", "filters.name", filled_by="refed_dspy.filters")
OPTIMIZERS: Registry[Any] = Registry("optimizer", "optimize.optimizer", filled_by="refed_dspy.optimizers.teleprompters")
TARGETS: Registry[Any] = Registry("target", "optimize.target", filled_by="refed_dspy.optimizers.metrics")


def rewrites_reference(method: str | None) -> bool:
    """The synthesis method called `method` makes each sample by rewriting its reference (Reflection-Tuning), so
    closeness to the reference is its point, not a copy; False for a name no method has. Asked by the floors below
    refed_dspy.methods (a filter, the report, the viewer) of its registry, as the config checks a name."""
    return method in METHODS and METHODS.get(method).rewrites_reference


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


_plugins = {"loaded": False}
_plugins_lock = threading.RLock()


def load_plugins_once() -> None:
    """load_plugins, the first time it is asked in this process (again after a plugin failed to load: the error
    then repeats rather than a name going missing unsaid)."""
    with _plugins_lock:
        if not _plugins["loaded"]:
            _plugins["loaded"] = True
            try:
                load_plugins()
            except BaseException:
                _plugins["loaded"] = False
                raise


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
