"""The reply lengths an estimate assumed, and where they come from.

`refed estimate` walks the real prompts and makes each reply up (refed_dspy.synthesis.estimate); how long it makes
them decides its completion tokens, and through the drafts the improve step carries, part of its prompt tokens. The
lengths come from one of three sources, and the estimate names it beside them:

- `pilot`: `refed estimate --pilot N` paid for N real samples; each stage's replies are what they measured.
- `measured`: this teacher model's earlier runs: the summaries (`summary.json`) of the runs in the run dir, its pilot
  and the folders beside it (the other runs under `runs/`) whose teacher is the same model; each stage's replies are
  their mean length, over all of them.
- `asked`: a local model the command serves, asked the run's prompts just now (`estimate.local_replies`: two
  references' way through the program, each step on the model's own reply); not measured on a run.
- `default`: nothing measured or asked them: a response is made as long as the references' responses, an instruction as long
  as theirs, other text at fixed lengths (a list item 30 tokens, other text 120). A stage no earlier run measured
  keeps these. `refed estimate --pilot N` measures them.

Whatever the source, no reply is longer than the `max_tokens` its call is sent (`teacher.max_tokens`, else the
model's own limit): a reply made up longer than that is cut to it, and the line says so.

A reply's tokens here are the completion tokens its call wrote, less a reasoning model's hidden reasoning (which the
walk cannot count; a pilot measures it apart).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from refed_dspy.config.section import tomllib
from refed_dspy.store.jsonl import read_json

Source = Literal["default", "asked", "measured", "pilot"]
PILOT_SIZE = 10  # the pilot the line offers: on the loopback server, pilots of 10 came within 1% of 200-sample runs
_MAX_DIRS = 500  # folders beside the run dir looked at for earlier runs, at most


class ReplyLengths(BaseModel):
    """The reply lengths an estimate assumed (tokens a call, by stage) and where each came from."""

    model_config = ConfigDict(extra="forbid")

    tokens: dict[str, int] = Field(
        description="Reply tokens a call, by stage: completion tokens less hidden reasoning."
    )
    source: dict[str, Source] = Field(
        description="Where each stage's length comes from: default (made up, not measured), asked (of a local model "
        "just now, the run's prompts), measured (this model's earlier runs) or pilot."
    )
    measured_in: list[str] = Field(
        default_factory=list, description="The run dirs whose summaries measured them (earlier runs, or the pilot)."
    )
    pilot_samples: int | None = Field(None, description="The pilot's samples, where a pilot measured them.")
    references: dict[str, int] = Field(
        default_factory=dict,
        description="The references' mean response and instruction tokens, which the defaults follow.",
    )
    max_tokens: int | None = Field(None, description="The output limit each call is sent: no reply is longer.")
    capped: list[str] = Field(
        default_factory=list, description="The stages whose replies were cut to max_tokens (else longer)."
    )
    size: int = Field(0, description="The run's samples: a pilot offered is smaller.")
    asked_calls: int | None = Field(
        None, description="The most replies a local model was asked at one stage (source `asked`); None: not asked."
    )

    def measured(self) -> bool:
        """Whether every stage's length was measured (by a pilot or earlier runs)."""
        return all(source in ("pilot", "measured") for source in self.source.values())

    def pilot_offer(self) -> int | None:
        """The pilot size to offer where lengths are not measured (None: all measured, or the run too small for a
        pilot smaller than itself)."""
        if self.measured() or self.size < 2:
            return None
        return min(PILOT_SIZE, self.size - 1)

    def text(self, offer: bool = True) -> str:
        """The line that says them: 'replies assumed at 180 tokens a call for generate, 420 for improve: ...';
        `offer`: with the pilot that would measure them (not for a run that is making them)."""
        groups: list[str] = []
        for source in ("pilot", "measured", "asked", "default"):
            stages = [s for s in self.tokens if self.source.get(s) == source]
            if not stages:
                continue
            lengths = ", ".join(
                f"{self.tokens[s]:,} {'tokens a call ' if i == 0 else ''}for {s}" for i, s in enumerate(stages)
            )
            groups.append(f"{lengths}: {self._origin(source)}")
        said = "replies assumed at " + "; at ".join(groups)
        if self.capped:
            said += f"; cut to max_tokens {self.max_tokens:,} for {', '.join(self.capped)} (else longer)"
        pilot = self.pilot_offer() if offer else None
        if pilot is not None:
            rest = "them" if all(source in ("asked", "default") for source in self.source.values()) else "the rest"
            said += f"; `refed estimate --pilot {pilot}` measures {rest}"
        return said

    def _origin(self, source: str) -> str:
        if source == "pilot":
            return f"measured on the pilot of {self.pilot_samples} samples ({', '.join(self.measured_in)})"
        if source == "measured":
            runs = len(self.measured_in)
            return f"measured on this model's {'earlier run' if runs == 1 else f'{runs} earlier runs'} " + (
                f"({', '.join(self.measured_in[:3])}{', ...' if runs > 3 else ''})"
            )
        if source == "asked":
            return (
                f"the local model's replies to the run's prompts just now (at most {self.asked_calls} a stage); not "
                "measured on a run"
            )
        refs = self.references
        return (
            f"the defaults, not measured (responses as long as the references' at {refs.get('response', 0):,} tokens, "
            f"instructions as theirs at {refs.get('instruction', 0):,}, other text at fixed lengths)"
        )


def stage_sums(usage: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    """(reply tokens, answered calls) by stage, from a run's `usage` (its summary's): completion tokens less hidden
    reasoning, over the paid calls whose tokens are known (pure)."""
    out: dict[str, tuple[int, int]] = {}
    for name, row in (usage.get("by_stage") or {}).items():
        if not isinstance(row, Mapping):
            continue
        try:
            calls = int(row.get("calls") or 0) - int(row.get("interrupted_calls") or 0)
            calls -= int(row.get("unmetered_calls") or 0)
            tokens = int(row.get("completion_tokens") or 0) - int(row.get("reasoning_tokens") or 0)
        except (TypeError, ValueError):
            continue
        if calls > 0 and tokens > 0:
            out[name] = (tokens, calls)
    return out


def mean_lengths(sums: Iterable[dict[str, tuple[int, int]]]) -> dict[str, int]:
    """Reply tokens a call by stage, over several runs' `stage_sums` (each call weighs the same; pure)."""
    total: dict[str, list[int]] = {}
    for run in sums:
        for name, (tokens, calls) in run.items():
            row = total.setdefault(name, [0, 0])
            row[0] += tokens
            row[1] += calls
    return {name: max(1, round(tokens / calls)) for name, (tokens, calls) in total.items()}


def earlier_runs(
    run_dir: str | Path,
    model: str,
    method: str | None = None,
    max_tokens: int | None = None,
    api_base: str | None = None,
) -> tuple[dict[str, int], list[str]]:
    """This model's reply lengths by stage, measured on its earlier runs: the run dir itself (an earlier invocation),
    its pilot, and the folders beside it and their pilots, those whose `summary.json` names `model` as the teacher and
    kept a sample, made by the same `method` and with the same `teacher.max_tokens` (their config.toml) where those
    are given, at the endpoint `api_base` (their fingerprint's; None: the provider's own), a copied run dir once; and
    those runs' dirs. ({}, []) when there are none. A model name served elsewhere (a local stand-in, a gateway's model
    of that name) is another model."""
    here = Path(run_dir)
    places = [here]
    with contextlib.suppress(OSError):  # a parent we may not list: the run dir alone
        places += sorted(p for p in here.parent.iterdir() if p.is_dir() and p != here)[:_MAX_DIRS]
    found: list[dict[str, tuple[int, int]]] = []
    dirs: list[str] = []
    seen: set[tuple[str, str]] = set()  # the runs read: a copy of one (`cp -r` for a backup) is that run again
    for place in places:
        for folder in (place, place / "pilot"):
            summary = read_json(folder / "summary.json")
            if summary.get("teacher") != model or not summary.get("samples"):
                continue
            run = (str(summary.get("run_dir") or folder), str(summary.get("finished_at")))
            if run in seen:
                continue
            seen.add(run)
            if method is not None and summary.get("method") not in (None, method):
                continue  # another method's calls write other replies
            if max_tokens is not None and _max_tokens_of(folder) not in (None, max_tokens):
                continue  # another output limit cuts them elsewhere
            if _endpoint_of(folder) not in (_UNKNOWN, api_base):
                continue  # another server's model of that name
            sums = stage_sums(summary.get("usage") or {})
            if sums:
                found.append(sums)
                dirs.append(str(folder))
    return mean_lengths(found), dirs


_UNKNOWN = object()  # a run dir that recorded no fingerprint: its endpoint is not known


def _endpoint_of(folder: Path) -> Any:
    """Where a run dir's teacher calls went, as its fingerprint recorded it (None: the provider's own); _UNKNOWN when
    it recorded none."""
    found = read_json(folder / "fingerprint.json")
    return (found.get("teacher") or {}).get("api_base") if found else _UNKNOWN


def _max_tokens_of(folder: Path) -> int | None:
    """The teacher's max_tokens in a run dir's config.toml (None: not set there, or no readable config)."""
    try:
        with (folder / "config.toml").open("rb") as f:
            teacher = tomllib.load(f).get("teacher") or {}
    except (OSError, tomllib.TOMLDecodeError):
        return None
    value = teacher.get("max_tokens")
    return value if isinstance(value, int) else None
