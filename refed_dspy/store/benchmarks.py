"""The evaluation prompt sets a run's data is checked against (`[quality] benchmarks`): presets, specs and loading.

An entry is one of
- a preset's name: `alpaca_eval` (AlpacaEval 2.0), `arena_hard` (Arena-Hard v0.1), `mt_bench` (MT-Bench) or `ifeval`
  (IFEval); each names its Hugging Face dataset, which the `datasets` library (or, for a file of a dataset's
  repository, `huggingface_hub`) downloads on first use and caches;
- a path to a local .json/.jsonl/.parquet/.csv file or a saved dataset directory whose rows carry `instruction` or
  `prompt` (`OWNER/NAME` that is no local path is a hub dataset's train split, as `[seeds] source` reads it);
- a table (`Benchmark`): a hub dataset (source, config, split, field) or a local file and its field, and a name.

Rows are read by the seed loader's readers (`refed_dspy.store.seeds.source_rows`): one reader per format. A prompt
field may hold a text, a list of texts (each turn of a multi-turn prompt is a prompt) or a list of `{content}`
messages. Whatever a user can get wrong (a missing file, a field the rows lack, an unknown preset, a hub dataset that
does not load) is a ConfigError naming the benchmark.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refed_dspy.clients.destination import checking
from refed_dspy.config.judging import Benchmark, BenchmarkEntry
from refed_dspy.errors import ConfigError, SeedError
from refed_dspy.secrets import first_line
from refed_dspy.store.seeds import source_rows

FILE_SUFFIXES = (".json", ".jsonl", ".parquet", ".csv")
PROMPT_FIELDS = ("instruction", "prompt")  # the fields an entry without `field` reads, in this order


PRESETS: dict[str, Benchmark] = {
    "alpaca_eval": Benchmark(
        name="AlpacaEval 2.0", source="tatsu-lab/alpaca_eval", file="alpaca_eval.json", field="instruction"
    ),
    "arena_hard": Benchmark(name="Arena-Hard v0.1", source="lmarena-ai/arena-hard-auto-v0.1", field="turns"),
    "mt_bench": Benchmark(name="MT-Bench", source="HuggingFaceH4/mt_bench_prompts", field="prompt"),
    "ifeval": Benchmark(name="IFEval", source="google/IFEval", field="prompt"),
}


def _squash(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


# "AlpacaEval 2.0", "alpaca-eval", "alpaca_eval": the same preset
_ALIASES = {_squash(text): key for key, spec in PRESETS.items() for text in (key, spec.name or "")}


def _looks_like_a_path(text: str) -> bool:
    return text.lower().endswith(FILE_SUFFIXES) or text.startswith((".", "~", "/")) or "/" in text or "\\" in text


def preset(name: str) -> Benchmark | None:
    """The preset `name` names ('alpaca_eval', 'AlpacaEval 2.0', 'MT-Bench', ...), or None."""
    key = _ALIASES.get(_squash(name))
    return PRESETS[key] if key else None


def resolve(entry: BenchmarkEntry) -> Benchmark:
    """The Benchmark an entry stands for: a table as it is, a preset's name as its preset, any other text as a local
    file or saved dataset directory (or, as `OWNER/NAME` that is no local path, a hub dataset). ConfigError for a
    bare name that is neither a preset nor an existing path."""
    if isinstance(entry, Benchmark):
        return entry
    if not _looks_like_a_path(entry):
        found = preset(entry)
        if found is not None:
            return found
        if not Path(entry).expanduser().exists():
            near = difflib.get_close_matches(entry.lower(), list(PRESETS), n=1, cutoff=0.5)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            raise ConfigError(
                f"benchmark '{entry}' is neither a preset ({', '.join(PRESETS)}) nor a file{hint} (a hub dataset: "
                '\'OWNER/NAME\', or a table {source = "OWNER/NAME", split = "...", field = "..."})'
            )
    return Benchmark(source=entry)


def pinned(entry: BenchmarkEntry) -> BenchmarkEntry:
    """The entry with a relative path to an existing local file or directory made absolute, its name kept as written,
    so that a record of it (a filter step's settings) reads the same prompts from any working directory."""
    if isinstance(entry, str) and not _looks_like_a_path(entry) and preset(entry) is not None:
        return entry
    source = entry if isinstance(entry, str) else entry.source
    path = Path(source).expanduser()
    if path.is_absolute() or not path.exists():
        return entry
    if isinstance(entry, str):
        return Benchmark(source=str(path.resolve()), name=entry)
    return entry.model_copy(update={"source": str(path.resolve()), "name": entry.label})


@dataclass(frozen=True)
class BenchmarkPrompts:
    """A benchmark's prompts, read: its name, where they came from (`local`: a file or directory of this machine,
    else the hub), and the prompts (in their order)."""

    name: str
    source: str
    local: bool
    prompts: list[str]


def _texts(value: Any) -> list[str]:
    """The prompt texts a field's value holds: a text, a list of texts, or a list of {content} messages."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        out = []
        for item in value:
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, dict) and isinstance(item.get("content"), str):
                out.append(item["content"])
        return out
    return []


def _hub_file(spec: Benchmark) -> str:
    """The local copy of a file of a hub dataset's repository (downloaded once into the Hugging Face cache)."""
    from huggingface_hub import hf_hub_download

    try:
        with checking():  # a request carrying $HF_TOKEN is checked where it goes
            return hf_hub_download(repo_id=spec.source, filename=spec.file, repo_type="dataset")
    except Exception as err:  # noqa: BLE001 - the hub's errors are many types; the user gets one line
        raise ConfigError(
            f"benchmark '{spec.label}': cannot download {spec.file} of the hub dataset {spec.source}: "
            f"{first_line(err)} (check the name and your network)"
        ) from None


def _is_hub_name(text: str) -> bool:
    """`OWNER/NAME` that is no local path: a hub dataset (the rule of [seeds] source)."""
    return (
        text.count("/") == 1
        and not text.startswith((".", "~", "/"))
        and not text.lower().endswith(FILE_SUFFIXES)
        and not Path(text).exists()
    )


def _where(spec: Benchmark) -> str:
    """Where a spec's rows are read from: a local path, a downloaded file of a hub repository, or a hub name."""
    if spec.file:
        return _hub_file(spec)
    if not _is_hub_name(spec.source) and not Path(spec.source).exists():
        raise ConfigError(f"benchmark '{spec.label}': file not found: {spec.source}")
    return spec.source


def load_benchmark(entry: BenchmarkEntry) -> BenchmarkPrompts:
    """Read one benchmark's prompts (distinct texts, in order). ConfigError naming the benchmark when its source cannot
    be read, its rows lack the field, or it holds no prompt."""
    spec = resolve(entry)
    label = spec.label
    try:
        _, rows = source_rows(_where(spec), spec.split, spec.config, setting=f"the benchmark's split ({label})")
        prompts: dict[str, None] = {}
        field = spec.field
        for row in rows:
            if not isinstance(row, dict):
                continue
            if field is None:
                field = next((f for f in PROMPT_FIELDS if f in row), None)
                if field is None:
                    raise ConfigError(
                        f"benchmark '{label}': its rows have no field {' or '.join(PROMPT_FIELDS)}; columns found: "
                        f'{sorted(row)} (name the prompt\'s column: {{source = ..., field = "..."}})'
                    )
            elif field not in row and not prompts:
                raise ConfigError(f"benchmark '{label}': no field '{field}' in its rows; columns found: {sorted(row)}")
            for text in _texts(row.get(field)):
                if text.strip():
                    prompts.setdefault(text.strip(), None)
    except SeedError as err:
        raise ConfigError(f"benchmark '{label}': {err}") from None
    if not prompts:
        raise ConfigError(f"benchmark '{label}': no prompts in {spec.source} (field {field or 'instruction/prompt'})")
    local = not spec.file and not _is_hub_name(spec.source)
    return BenchmarkPrompts(label, f"{spec.source}/{spec.file}" if spec.file else spec.source, local, list(prompts))


def load_benchmarks(entries: Iterable[BenchmarkEntry]) -> list[BenchmarkPrompts]:
    """Read every benchmark of `entries`; ConfigError when two have the same name (reasons and counts go by name)."""
    out: list[BenchmarkPrompts] = []
    for entry in entries:
        loaded = load_benchmark(entry)
        if any(b.name == loaded.name for b in out):
            raise ConfigError(f"two benchmarks are named '{loaded.name}'; give one a name ({{..., name = \"...\"}})")
        out.append(loaded)
    return out
