"""A run's figures while it works: counters and histograms under fixed names and labels, kept in plain Python.

The names and units are the OpenTelemetry GenAI conventions' (`gen_ai.client.operation.duration`,
`gen_ai.client.token.usage`, with `gen_ai.operation.name`, `gen_ai.provider.name`, `gen_ai.request.model`,
`gen_ai.token.type` and `error.type`) and refed's own under `refed.` (INSTRUMENTS). Label values come from fixed sets:
roles, stages, kinds of work, reject and retry reasons as kinds (never messages), service tiers, and the models the
run's config asks for (never the model a reply names: a gateway that names a new one in each reply would make a
series of each).

Recording is a dict lookup and a few additions under a lock (about a microsecond a call); turning the figures into
OpenTelemetry's data model, which costs the SDK about 10 microseconds a measurement, is done only when something
reads them (refed_dspy.engine.metrics: a scrape, an export). `series()` may be called from any thread. Every
counter and histogram can start from the values an earlier invocation of the run left (`restore`), so a resumed
run's totals go on from where it stopped.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from refed_dspy.providers.registry import convention_name

DURATION = "gen_ai.client.operation.duration"
TOKENS = "gen_ai.client.token.usage"
# the conventions' advised bucket boundaries
DURATION_BOUNDS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TOKEN_BOUNDS = tuple(4**i for i in range(14))  # 1, 4, 16, ... 67,108,864


@dataclass(frozen=True)
class Instrument:
    """What a series is: a counter (a total that only grows), a gauge (a value now) or a histogram."""

    kind: str
    unit: str
    description: str
    bounds: tuple[float, ...] = ()


INSTRUMENTS: dict[str, Instrument] = {
    DURATION: Instrument("histogram", "s", "GenAI operation duration: each LM request the run sent.", DURATION_BOUNDS),
    TOKENS: Instrument("histogram", "{token}", "Number of input and output tokens used per LM request.", TOKEN_BOUNDS),
    "refed.calls": Instrument(
        "counter",
        "{call}",
        "LM calls by role, stage and outcome (answered, failed, "
        "interrupted, cached: an answer replayed from the run's cache, not sent).",
    ),
    "refed.cost": Instrument(
        "counter", "usd", "What the run's LM calls cost, by role and the service tier that served them."
    ),
    "refed.samples": Instrument("counter", "{sample}", "Records the run wrote (samples; judgments of a judging)."),
    "refed.rejects": Instrument("counter", "{reject}", "Reject records the run wrote, by stage and reason."),
    "refed.work": Instrument(
        "counter",
        "{task}",
        "Pieces of work that ended without being retried, by kind and outcome (done, or the reason they failed for "
        "good); those retried are refed.retries.",
    ),
    "refed.retries": Instrument("counter", "{retry}", "Pieces of work scheduled to run again, by reason."),
    "refed.calls.in_flight": Instrument("gauge", "{call}", "Calls in flight: the window's slots held by running work."),
    "refed.window": Instrument(
        "gauge",
        "{call}",
        "The window of calls in flight: cut when 429s rise with the calls in flight (a provider's limit, not a steady "
        "share of refusals), grown back as work succeeds; with several endpoints, each one's window too "
        "(refed.endpoint), in requests at it.",
    ),
    "refed.budget.remaining": Instrument("gauge", "1", "What a budget has left (refed.budget: cost_usd, calls)."),
    "refed.batch.jobs": Instrument("gauge", "{batch}", "Provider batches of the run, by state."),
    "refed.workers": Instrument("gauge", "{worker}", "Ray workers of the run, alive or lost."),
}


RECORD_COUNTS = ("refed.samples", "refed.rejects")  # counted from the run's records when it starts


@dataclass
class Series:
    """One series: an instrument's value (counter, gauge) or distribution (histogram) for one set of labels."""

    name: str
    attributes: dict[str, str]
    value: float = 0.0  # a counter's total, a gauge's value
    count: int = 0  # a histogram's observations, their sum, per-bucket counts (len(bounds) + 1), min and max
    sum: float = 0.0
    buckets: list[int] = field(default_factory=list)
    min: float | None = None
    max: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "attributes": self.attributes}
        if INSTRUMENTS[self.name].kind == "histogram":
            out.update(count=self.count, sum=self.sum, buckets=self.buckets, min=self.min, max=self.max)
        else:
            out["value"] = self.value
        return out


class _Histogram:
    __slots__ = ("bounds", "buckets", "count", "max", "min", "sum")

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.buckets = [0] * (len(bounds) + 1)
        self.count, self.sum = 0, 0.0
        self.min: float | None = None
        self.max: float | None = None

    def observe(self, value: float) -> None:
        self.buckets[bisect.bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.sum += value
        self.min = value if self.min is None or value < self.min else self.min
        self.max = value if self.max is None or value > self.max else self.max

    def add(self, other: dict[str, Any]) -> None:
        """Take in the observations of a series as `Series.to_dict` wrote it (an earlier invocation's)."""
        buckets = other.get("buckets") or []
        if len(buckets) == len(self.buckets):
            self.buckets = [a + int(b) for a, b in zip(self.buckets, buckets, strict=True)]
        self.count += int(other.get("count") or 0)
        self.sum += float(other.get("sum") or 0.0)
        for name, pick in (("min", min), ("max", max)):
            theirs = other.get(name)
            if isinstance(theirs, (int, float)):
                mine = getattr(self, name)
                setattr(self, name, theirs if mine is None else pick(mine, theirs))


class Figures:
    """The counters and histograms of one run's stage (see the module docstring), all under `role`. Thread-safe."""

    def __init__(self, role: str):
        self.role = role
        self._counters: dict[tuple, float] = {}  # (name, label values...) -> total
        self._histograms: dict[tuple, _Histogram] = {}  # (name, stage, model, error, token type)
        self._earlier: list[dict[str, Any]] = []  # series an earlier invocation left that this one has not recorded
        self._lock = threading.Lock()

    # ---- recording --------------------------------------------------------------------------
    def count(self, name: str, n: float = 1, **labels: str) -> None:
        """Add `n` to counter `name` (one of INSTRUMENTS) under `labels` (attribute names without their `refed.`)."""
        key = (name, *sorted(labels.items()))
        with self._lock:
            self._counters[key] = self._counters.get(key, 0) + n

    def calls(self, infos: Iterable[Any], cost_by_tier: dict[str, float]) -> None:
        """The LM calls of one piece of work (CallInfo), and what they cost by the service tier that served them."""
        counters = self._counters
        with self._lock:
            for info in infos:
                outcome = _outcome(info)
                key = ("refed.calls", ("outcome", outcome), ("stage", info.stage))
                counters[key] = counters.get(key, 0) + 1
                if outcome == "cached":  # no request was sent: no operation
                    continue
                error = info.error or ("interrupted" if outcome == "interrupted" else None)
                where = (info.stage, info.model, error)
                self._observe((DURATION, *where, None), info.seconds)
                if outcome == "answered" and not info.tokens_unknown:
                    self._observe((TOKENS, *where, "input"), info.prompt_tokens)
                    self._observe((TOKENS, *where, "output"), info.completion_tokens)
            for tier, cost in cost_by_tier.items():
                key = ("refed.cost", ("tier", tier))
                counters[key] = counters.get(key, 0) + cost

    def _observe(self, key: tuple, value: float) -> None:
        found = self._histograms.get(key)
        if found is None:
            found = self._histograms[key] = _Histogram(INSTRUMENTS[key[0]].bounds)
        found.observe(value)

    def restore(self, earlier: Iterable[dict[str, Any]]) -> None:
        """Start from the counters and histograms of `earlier` (series as `Series.to_dict` wrote them, of this role).
        Gauges, other roles' series and the records' counts (`RECORD_COUNTS`: the stage counts them from its files,
        exactly, even after a kill) are left out."""
        kept = []
        for row in earlier:
            name = row.get("name")
            attrs = row.get("attributes") if isinstance(row.get("attributes"), dict) else {}
            if name not in INSTRUMENTS or INSTRUMENTS[name].kind == "gauge" or name in RECORD_COUNTS:
                continue
            if attrs.get("refed.role") != self.role:
                continue
            kept.append(row)
        with self._lock:
            self._earlier = kept

    # ---- reading ------------------------------------------------------------------------------
    def series(self) -> list[Series]:
        """Every counter and histogram as it is now (an earlier invocation's included), labelled."""
        with self._lock:
            counters = list(self._counters.items())
            histograms = [(k, h.buckets[:], h.count, h.sum, h.min, h.max) for k, h in self._histograms.items()]
            earlier = self._earlier
        out: dict[tuple, Series] = {}
        for (name, *labels), value in counters:
            attrs = {"refed.role": self.role, **{f"refed.{k}": v for k, v in labels}}
            out[_identity(name, attrs)] = Series(name, attrs, value=value)
        for (name, stage, model, error, token_type), buckets, count, total, low, high in histograms:
            attrs = _genai_attributes(self.role, stage, model, error, token_type)
            out[_identity(name, attrs)] = Series(
                name, attrs, count=count, sum=total, buckets=buckets, min=low, max=high
            )
        for row in earlier:
            _take_in(out, row)
        return list(out.values())


def _outcome(info: Any) -> str:
    if info.error is not None:
        return "failed"
    if info.interrupted:
        return "interrupted"
    return "cached" if info.cache_hit else "answered"


def _genai_attributes(role: str, stage: str, model: str, error: str | None, token_type: str | None) -> dict[str, str]:
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": convention_name(model),
        "gen_ai.request.model": model.split("/", 1)[-1],
    }
    if token_type:
        attrs["gen_ai.token.type"] = token_type
    if error:
        attrs["error.type"] = error
    attrs.update({"refed.role": role, "refed.stage": stage})
    return attrs


def _identity(name: str, attrs: dict[str, str]) -> tuple:
    return (name, *sorted(attrs.items()))


def _take_in(out: dict[tuple, Series], row: dict[str, Any]) -> None:
    """Add an earlier invocation's series `row` to the same series of this one (made when this one has none)."""
    name, attrs = row["name"], {str(k): str(v) for k, v in row["attributes"].items()}
    key = _identity(name, attrs)
    found = out.get(key)
    if INSTRUMENTS[name].kind == "counter":
        value = float(row.get("value") or 0.0)
        if found is None:
            out[key] = Series(name, attrs, value=value)
        else:
            found.value += value
        return
    merged = _Histogram(INSTRUMENTS[name].bounds)
    if found is not None:
        merged.add(found.to_dict())
    merged.add(row)
    out[key] = Series(
        name, attrs, count=merged.count, sum=merged.sum, buckets=merged.buckets, min=merged.min, max=merged.max
    )
