"""An entry of `[quality] benchmarks` (and of the decontaminate filter's `benchmarks`): a preset's name, a path, or a
`Benchmark` table; refed_dspy.store.benchmarks resolves and reads them."""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationError

from refed_dspy.config.section import Section, UserPath


class Benchmark(Section):
    """One evaluation prompt set: where its rows are and which field holds the prompt."""

    source: UserPath = Field(
        description="A Hugging Face dataset id ('google/IFEval'), a local .json/.jsonl/.parquet/.csv file, or a saved "
        "dataset directory."
    )
    file: str | None = Field(
        None,
        description="A file of the hub dataset's repository to read (.json/.jsonl/.parquet/.csv), for a dataset "
        "whose prompts are a file there rather than a split the datasets library loads.",
    )
    config: str | None = Field(None, description="The hub dataset's configuration (subset), when it has several.")
    split: str = Field("train", description="The split to read from a hub dataset or a saved DatasetDict.")
    field: str | None = Field(
        None,
        description="The column holding the prompt: a text, a list of texts (each turn a prompt) or a list of "
        "{content} messages. Unset: instruction, else prompt.",
    )
    name: str | None = Field(
        None, description="What reports, removal reasons and the dataset card call it. Unset: the source."
    )

    @property
    def label(self) -> str:
        """Its name: the one given, else its source (and file)."""
        return self.name or (f"{self.source}/{self.file}" if self.file else self.source)


BenchmarkEntry = str | Benchmark


def _problems(err: ValidationError) -> str:
    out = []
    for e in err.errors():
        key = ".".join(str(part) for part in e["loc"])
        if e["type"] == "extra_forbidden":
            out.append(f"unknown key '{key}' (keys: {', '.join(Benchmark.model_fields)})")
        elif e["type"] == "missing":
            out.append(f"needs '{key}'")
        else:
            out.append(f"{key}: {e['msg'].lower()}")
    return "; ".join(out)


def benchmark_entries(value: Any) -> Any:
    """A config's benchmarks before validation: one entry alone is a list of one, each table a Benchmark; an entry of
    another kind is a ValueError saying which one (the config's message then names the field)."""
    if isinstance(value, (str, Benchmark)):
        value = [value]
    if value is None:
        return value  # `--set ...=none`: unset where the field may be, refused where it may not
    if not isinstance(value, list):
        raise ValueError(f"expected a list of presets, paths or tables, got {value!r}")
    out: list[Any] = []
    for i, entry in enumerate(value, 1):
        if isinstance(entry, str) and not entry.strip():
            raise ValueError(f"entry {i} is empty")
        if isinstance(entry, (str, Benchmark)):
            out.append(entry)
        elif isinstance(entry, dict):
            try:
                out.append(Benchmark.model_validate(entry))
            except ValidationError as err:
                raise ValueError(f"entry {i} (a table): {_problems(err)}") from None
        else:
            raise ValueError(f"entry {i}: expected a preset's name, a path or a table, got {entry!r}")
    return out
