"""The base of every command's result: typed fields, written to the command's JSON file as it always was.

A result reads as attributes (`summary.samples`) and, like the JSON file it is written to, by key
(`summary["samples"]`, `summary.get("estimate")`, `"estimate" in summary`, `dict(summary)`). A field declared with
`Optional()` is left out of the JSON (and of the keys) while it is None, as the file leaves it out.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


def Optional(description: str = "", alias: str | None = None) -> Any:  # noqa: N802 - reads as a type in a declaration
    """A field that is None, and then absent from the JSON, unless the run had it (batch figures, an estimate)."""
    return Field(None, description=description, alias=alias, exclude_if=lambda value: value is None)


class Result(BaseModel):
    """A command's result (see the module docstring)."""

    # a key that is not a Python name ("yield") is a field with an alias; results are built from their JSON's keys
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def to_json(self) -> dict[str, Any]:
        """The JSON object the command writes.

        Returns:
            The result's fields by their JSON keys, in JSON types, with unset `Optional()` fields left out.
        """
        return self.model_dump(mode="json", by_alias=True)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping) and not isinstance(other, Result):
            return dict(self.items()) == dict(other)  # equal to the dict it reads as
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment] - mutable, like the dict it reads as

    # ---- read like the JSON file ---------------------------------------------------------------
    @classmethod
    def _field_of(cls, key: str) -> str | None:
        """The field that a JSON key names (its alias, or its own name)."""
        for name, field in cls.model_fields.items():
            if key == (field.alias or name):
                return name
        return None

    def _present(self, key: object) -> bool:
        name = self._field_of(key) if isinstance(key, str) else None
        if name is None:
            return False
        field = type(self).model_fields[name]
        return not (field.exclude_if is not None and field.exclude_if(getattr(self, name)))

    def __getitem__(self, key: str) -> Any:
        if not self._present(key):
            raise KeyError(key)
        return getattr(self, self._field_of(key))  # type: ignore[arg-type]

    def get(self, key: str, default: Any = None) -> Any:
        """The value of `key`, or `default` when the JSON file would not have it.

        Args:
            key: a JSON key of the result (a field's alias, or its name).
            default: what to return when the JSON file would not have `key`.

        Returns:
            The field's value, or `default`.
        """
        return self[key] if self._present(key) else default

    def __contains__(self, key: object) -> bool:
        return self._present(key)

    def keys(self) -> list[str]:
        return [
            field.alias or name for name, field in type(self).model_fields.items() if self._present(field.alias or name)
        ]

    def values(self) -> list[Any]:
        return [self[key] for key in self.keys()]

    def items(self) -> list[tuple[str, Any]]:
        return [(key, self[key]) for key in self.keys()]

    def __iter__(self) -> Iterator[str]:  # type: ignore[override] - iterate keys, as a mapping does
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())


Mapping.register(Result)
