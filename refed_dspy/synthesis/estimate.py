"""`refed estimate`: what a synthesis config will cost, before any call is made.

The first units of the run are walked through the real programs with the real adapter, which formats
every prompt as the run would (system message, fields, response_format); no LM is called: each reply is
made up from the output's JSON schema, and read back by the adapter's own parser so that the next step gets inputs
of the right shape. How long the replies are comes from one of four sources, which the estimate names beside the
lengths (refed_dspy.synthesis.replies): a stage's replies are as long as this model's earlier runs measured them,
where there are some; else, for a local model the command serves while it serves, as long as it writes them now to
the run's own prompts (`local_replies`: two references walked with the model answering each step); else the defaults
make its text as long as the references suggest (a response as long as the references' responses, an instruction as
long as theirs, other text a fixed prior); where no run measured them the line offers `--pilot N` to; a pilot's
projection uses what the pilot measured. No reply is longer than the max_tokens its call is sent. Prompt tokens are
counted
with the model's tokenizer (LiteLLM's, offline), the response schema among them where the provider shows it to the
model (it bills it as input, as bench/billed_tokens.py counts it); completion tokens are those of the made-up replies.

Per stage, calls per reference (feedback), per unit (instruction synthesis) and per sample (respond,
improve, critique) are scaled to the run's size. Where the provider caches prompt prefixes by itself (its
`prefix_cache`), the prefix the walked prompts of one step share is counted as cached after the first call. Where it
caches the prefixes a request marks (its `marked_cache`, with `prompt_cache` on), each walked prompt's repeated parts
(refed_dspy.adapters.layout: the instructions and demos every call of a step repeats, the reference every call of its
reference repeats) count as written once and read after, those long enough for the model's minimum. The range covers
replies half as long to 1.6x as long, 10% of calls repaired, and (at the top) no cache hit at all, every prompt token
at the dearer of the input and cache-write prices.

Each row is priced online on the default tier, on the flex tier where the model has a flex price (and on the priority
tier when the config asks for it), and in batch; the wall time of each way is set beside them
(refed_dspy.synthesis.estimate).

How long a run of this size takes here (`eta_line`), said before a run on a local model the command started itself:
the tokens come from the run's own estimate, the same as `refed estimate` makes (the real prompts walked, no LM
called, its reply lengths from the same source and said with it, the model's own replies to the run's prompts where no
run measured them; the prompt prefixes llama.cpp keeps between calls are not read again); the speed is this
machine's, now: requests the size of the run's mean call asked of the server with all its slots busy
(`local_server.measure_speed`, `probe_sizes`). Those requests are a check of the server, before the run: not the run's
calls, and not in its ledger. `refed estimate` for such a teacher says the same
(`local_text`) while the model serves, and while it does not, that its time is not known until it does: no assumed
speed stands in for this machine's.

How long a run on a hosted teacher takes online, on the flex tier and in batch, as `refed estimate` says it (pure
arithmetic).

Online, the run keeps `synthesis.concurrency` calls in flight, so its wall time is its calls' time over that many
lanes: each call waits for its first token (`FIRST_TOKEN_S`) and writes its completion at `TOKENS_PER_S`, unless a
pilot measured the calls' seconds. Rate limits are not modelled: a run that meets one takes longer. The flex tier
answers the same calls more slowly (`FLEX_SLOWER`; OpenAI promises no figure), and now and then not at all (a wait).

In batch, each stage of the chain (feedback, then instructions, then responses, then improvements) waits for the
batches of the stage before it: the wall time is the number of stages times a batch's turnaround, typically
`BATCH_ROUND_S` and at most `BATCH_ROUND_MAX_S` (the providers' 24-hour window) each; times the waves of work, when
more pieces of work than `batch.max_in_flight` wait at once.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import math
import os
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any

import dspy
from pydantic import BaseModel, ConfigDict, Field

from refed_dspy.adapters import RepairingAdapter, build_adapter
from refed_dspy.adapters.contract import output_schema
from refed_dspy.adapters.layout import stable_prompt
from refed_dspy.clients.calls import CallTag, current_stage, stage
from refed_dspy.clients.local_server import (
    LocalServer,
    Reply,
    Speed,
    listening,
    measure_speed,
    sample_reply,
    served_roles,
)
from refed_dspy.config import Config, config_hash, fingerprint
from refed_dspy.config.lm import price_of, unpriced_text
from refed_dspy.config.load import ConfigLike, as_config
from refed_dspy.engine.progress import rough_duration
from refed_dspy.engine.transport import acall_part
from refed_dspy.errors import RefedError
from refed_dspy.ledger.usage import prompt_cache_share, prompt_cache_text
from refed_dspy.methods import METHODS
from refed_dspy.providers.base import MarkedCache, PrefixCache
from refed_dspy.providers.registry import provider_for
from refed_dspy.runtime.sync import run_sync
from refed_dspy.store.records import Reference
from refed_dspy.store.results import Optional, Result
from refed_dspy.store.seeds import given_references, read_seeds
from refed_dspy.synthesis.next_work import TASK_STAGES, feedback_record, parts_of, unit_order
from refed_dspy.synthesis.program import resolve_program
from refed_dspy.synthesis.replies import PILOT_SIZE, ReplyLengths, earlier_runs

_OTHER_TEXT_TOKENS = 120  # a critique, a feature description, a rationale
_ITEM_TOKENS = 30  # one item of a list in an analysis or a plan
_ITEMS = 3
_LOW, _HIGH, _REPAIRS = 0.5, 1.6, 0.10
_USUAL_CACHE = PrefixCache()  # from 1,024 tokens, in steps of 128
_WORDS = ("plan", "data", "model", "step", "river", "value", "check", "table", "light", "order", "point", "field")


@functools.lru_cache(maxsize=32)
def _tokenizer(model: str) -> tuple[str, Callable[[str], int]]:
    """What counts `model`'s tokens, in words, and the count: LiteLLM's Hugging Face tokenizer for the families it
    has one for, else tiktoken's encoding for the model (o200k_base for GPT-4o), else cl100k_base as an
    approximation. The provider prefix ("openai/") is not part of the model's name here."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "true")
    import litellm
    import litellm.litellm_core_utils.default_encoding  # noqa: F401 - tiktoken reads the files LiteLLM ships
    import tiktoken

    bare = model.split("/", 1)[-1]
    kind = litellm.utils.huggingface_tokenizer_kind(bare)
    if kind is not None:
        return (
            f"the {kind} tokenizer (Hugging Face, through LiteLLM)",
            lambda text: int(litellm.token_counter(model=bare, text=text)),
        )
    try:
        name, label = ("o200k_base" if "gpt-4o" in bare else tiktoken.encoding_name_for_model(bare)), ""
    except KeyError:
        name, label = "cl100k_base", f", an approximation (no tokenizer is known for {model})"
    try:
        encoding = tiktoken.get_encoding(name)
    except Exception:  # noqa: BLE001 - an encoding LiteLLM does not ship, and no network to fetch it
        name, label = "cl100k_base", f", an approximation ({name} is not on this machine)"
        encoding = tiktoken.get_encoding(name)
    return f"tiktoken {name}{label}", lambda text: len(encoding.encode(text, disallowed_special=()))


def tokenizer_of(model: str) -> str:
    """Which tokenizer `count_tokens` uses for `model`, in words."""
    return _tokenizer(model)[0]


def count_tokens(model: str, text: str) -> int:
    """Tokens of `text` for `model`, counted as `tokenizer_of` says."""
    return _tokenizer(model)[1](text)


def made_up_text(tokens: int, start: int) -> str:
    """About `tokens` tokens of filler text (one token a word), beginning at variant `start`: texts of successive
    variants differ from their first word, as two real replies would (so that walked prompts share no made-up prefix)."""
    return " ".join(_WORDS[(start + i * (1 + start % 5)) % len(_WORDS)] for i in range(max(1, tokens)))


@dataclass
class Lengths:
    """Typical token lengths the made-up replies follow: a response, an instruction, one item of a list in an analysis
    or a plan, and other text (a critique, a feature description, a rationale)."""

    response: int
    instruction: int
    item: int = _ITEM_TOKENS
    other: int = _OTHER_TEXT_TOKENS

    def scaled(self, factor: float) -> Lengths:
        """Every length times `factor`, a word at least (pure)."""
        return Lengths(*(max(1, round(n * factor)) for n in (self.response, self.instruction, self.item, self.other)))


def made_up_value(
    schema: dict[str, Any], name: str, lengths: Lengths, defs: dict[str, Any], variants: Iterator[int]
) -> Any:
    """A value that fits `schema`, text as long as `lengths` says for a field called `name`, each text the next of
    `variants` (so one walk's replies are the same whatever ran before it)."""
    if "$ref" in schema:
        return made_up_value(defs[schema["$ref"].split("/")[-1]], name, lengths, defs, variants)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return made_up_value(options[0], name, lengths, defs, variants)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties") or {}
        return {k: made_up_value(v, k, lengths, defs, variants) for k, v in props.items()}
    if kind == "array":
        n = schema.get("minItems") or min(_ITEMS, schema.get("maxItems") or _ITEMS)
        item = schema.get("items") or {"type": "string"}
        return [made_up_value(item, name, lengths, defs, variants) for _ in range(n)]
    if kind == "integer":
        low, high = schema.get("minimum", 1), schema.get("maximum", 10)
        return (low + high) // 2
    if kind == "number":
        return 0.5
    if kind == "boolean":
        return True
    lowered = name.lower()
    if "response" in lowered and "feedback" not in lowered:
        tokens = lengths.response
    elif "instruction" in lowered and "critique" not in lowered:
        tokens = lengths.instruction
    elif schema.get("maxLength") and schema["maxLength"] <= 2000:
        tokens = lengths.item
    else:
        tokens = lengths.other
    text = made_up_text(tokens, next(variants))
    return text[: schema["maxLength"]].rstrip() if schema.get("maxLength") else text  # a reply keeps its contract


@dataclass
class Tally:
    """Calls and tokens seen in the walk-through, by stage and by the kind of work that made them."""

    calls: dict[tuple[str, str], list[tuple[int, int]]] = field(default_factory=lambda: defaultdict(list))
    prompts: dict[tuple[str, str], list[str]] = field(default_factory=lambda: defaultdict(list))
    # the tokens up to where each call's repeated parts end: (shared by the whole step, shared by its reference)
    repeated: dict[tuple[str, str], list[tuple[list[int], int]]] = field(default_factory=lambda: defaultdict(list))

    def add(
        self, work: str, stage: str, prompt: int, completion: int, text: str = "", repeated: tuple = ([], 0)
    ) -> None:
        self.calls[(work, stage)].append((prompt, completion))
        self.prompts[(work, stage)].append(text)
        self.repeated[(work, stage)].append(repeated)


def common_prefix(texts: list[str]) -> str:
    """The longest prefix every text starts with (pure)."""
    if not texts:
        return ""
    first, last = min(texts), max(texts)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    return first[:n]


def marked_cache_tokens(calls: float, refs: float, step: float, ref: float) -> tuple[float, float]:
    """(read, written) prompt tokens of `calls` calls of one step spread over `refs` references, under a cache of the
    prefixes a request marks: each prompt repeats `step` tokens of every call of the step (instructions, demos) and
    `ref` tokens of the calls of its reference (0: nothing long enough to be cached). The step's prefix is written by
    the first call and read by the first call of each other reference; the reference's prefix is written by its
    first call and read by the others (pure)."""
    if calls <= 0:
        return 0.0, 0.0
    refs = max(1.0, min(refs, calls))
    ref = max(ref, step)
    written = step + (ref - step) * refs
    read = step * (refs - 1) + ref * (calls - refs)
    return read, written


def repeated_tokens(ends: list[int], last: int, minimum: int) -> tuple[int, int]:
    """(step, reference) prefix tokens of one prompt that a marked cache keeps: of the ends of its repeated parts
    before its last message (`ends`) the longest that reaches `minimum`, and the end in its last message (`last`)
    when it does (0 for none; pure)."""
    step = max((t for t in ends if t >= minimum), default=0)
    return step, (last if last >= minimum else 0)


def cacheable_tokens(prefix_tokens: int, cache: PrefixCache = _USUAL_CACHE) -> int:
    """Prompt tokens a provider that caches prompt prefixes automatically (by `cache`'s rule; the usual one: from 1,024
    tokens, in steps of 128) serves from its cache when a call shares `prefix_tokens` with an earlier one (pure)."""
    return cache.cached(prefix_tokens)


Ask = Callable[[list[dict[str, Any]], dict[str, Any]], Reply | None]


class _Walk:
    """Makes any RepairingAdapter answer itself: see the module docstring. `targets`: the reply tokens a call of each
    stage measured (refed_dspy.synthesis.replies), which the made-up replies of that stage are sized to; `cap`: the
    output limit the calls are sent, which no reply exceeds (the stages where one would have are kept in `capped`).
    `ask`: a model to put each prompt to instead (a local one, `local_replies`): its reply goes on where the adapter
    can read it."""

    def __init__(
        self,
        adapter: RepairingAdapter,
        model: str,
        lengths: Lengths,
        tally: Tally,
        targets: dict[str, int] | None = None,
        cap: int | None = None,
        ask: Ask | None = None,
    ):
        self.adapter, self.model, self.lengths, self.tally = adapter, model, lengths, tally
        self.targets, self.cap, self.ask = targets or {}, cap, ask
        self.capped: set[str] = set()
        self.work = "sample"
        self.variants = itertools.count()  # the made-up replies' texts, from the first for every walk

    def answer(self, lm: Any, lm_kwargs: dict[str, Any], signature: Any, demos: list, inputs: dict[str, Any]):
        exchange = self.adapter._exchange(lm, lm_kwargs, signature, demos, inputs)
        messages, kwargs, _ = next(exchange)
        prompt_text = "\n".join(str(m.get("content", "")) for m in messages)
        if kwargs.get("response_format") is not None and self.adapter.schema_shown:  # billed as input where shown
            fmt = kwargs["response_format"]
            prompt_text += json.dumps(fmt if isinstance(fmt, dict) else getattr(fmt, "model_json_schema", dict)())
        repeated = self._repeated(signature, messages)
        reply, completion = self._sized(signature)
        self.tally.add(
            self.work,
            current_stage(),
            count_tokens(self.model, prompt_text),
            completion,
            prompt_text,
            repeated,
        )
        real = self.ask(messages, kwargs) if self.ask is not None else None
        if real is not None:
            read = _read(exchange, real.text)
            if read is not None:
                return read
            exchange = self.adapter._exchange(lm, lm_kwargs, signature, demos, inputs)  # the made-up reply goes on
            next(exchange)
        read = _read(exchange, reply)
        if read is None:
            raise RuntimeError(f"the adapter could not read a reply made from {signature.__name__}'s own schema")
        return read

    def _made_up(self, signature: Any, lengths: Lengths) -> str:
        """A reply to `signature` made up from its output schema, its texts as long as `lengths` says, in the
        adapter's format."""
        schema = output_schema(signature)
        values = {
            name: made_up_value(sub, name, lengths, schema.get("$defs") or {}, self.variants)
            for name, sub in (schema.get("properties") or {}).items()
        }
        if self.adapter.mode != "chat":
            return json.dumps(values)
        reply = "\n\n".join(f"[[ ## {k} ## ]]\n{v if isinstance(v, str) else json.dumps(v)}" for k, v in values.items())
        return reply + "\n\n[[ ## completed ## ]]"

    def _sized(self, signature: Any) -> tuple[str, int]:
        """A made-up reply for the current stage and the completion tokens it counts for: as long as the lengths make
        it, or as long as the stage's measured replies (`targets`), at most `cap`. A reply sized to a target has its
        texts scaled so that its tokens come near it (the format's own tokens do not scale), and counts for it."""
        name = current_stage()
        reply = self._made_up(signature, self.lengths)
        tokens = count_tokens(self.model, reply)
        target = self.targets.get(name, tokens)
        if self.cap is not None and target > self.cap:
            target = self.cap
            self.capped.add(name)
        if target == tokens:
            return reply, tokens
        least = self._made_up(signature, self.lengths.scaled(0.0))  # every text one word: about the format alone
        floor = count_tokens(self.model, least)
        if target <= floor or tokens <= floor:
            return least, target
        return self._made_up(signature, self.lengths.scaled((target - floor) / (tokens - floor))), target

    def _repeated(self, signature: Any, messages: list[dict[str, Any]]) -> tuple[list[int], int]:
        """The tokens up to each end of a prompt's repeated parts: those before its last message, and the one in it
        (0: none)."""
        stable = stable_prompt(signature, messages)
        if stable is None:
            return [], 0
        last = len(messages) - 1
        tokens = {end: count_tokens(self.model, _prefix(stable.texts, end)) for end in stable.ends}
        return [t for end, t in tokens.items() if end[0] < last], next(
            (t for end, t in tokens.items() if end[0] == last), 0
        )


def _read(exchange: Any, text: str) -> Any:
    """What the adapter's `exchange` reads from the reply `text`; None where it cannot (it asks for a repair, or
    fails)."""
    try:
        exchange.send(([text], CallTag()))
    except StopIteration as done:
        return done.value
    except Exception:  # noqa: BLE001 - a model's unusable reply: the caller goes on with a made-up one
        return None
    exchange.close()
    return None


def _prefix(texts: tuple[str, ...], end: tuple[int, int | None]) -> str:
    """The prompt's text up to `end` (a StablePrompt's), its messages joined as the walk counts a prompt."""
    index, offset = end
    return "\n".join([*texts[:index], texts[index] if offset is None else texts[index][:offset]])


def _walking_adapter(adapter: RepairingAdapter, walk: _Walk) -> RepairingAdapter:
    class Walking(type(adapter)):  # type: ignore[misc, valid-type]
        def __call__(self, lm, lm_kwargs, signature, demos, inputs):
            return walk.answer(lm, lm_kwargs, signature, demos, inputs)

        async def acall(self, lm, lm_kwargs, signature, demos, inputs):
            return walk.answer(lm, lm_kwargs, signature, demos, inputs)

    copy = Walking.__new__(Walking)
    copy.__dict__.update(adapter.__dict__)
    return copy


def _walk(
    config: Config,
    refs: list[Reference],
    lengths: Lengths,
    tally: Tally,
    k: int,
    targets: dict[str, int],
    ask: Ask | None = None,
) -> _Walk:
    """Run the first `k` references' feedback, units and samples through the parts of the program the run would
    execute (its compiled `synthesis.program` included), as the runner calls them; no LM is called (but `ask`'s,
    where given). The replies of a stage in `targets` are as long as it says; none is longer than the teacher's
    output limit. Returns the walk (its `capped`: the stages whose replies were cut to that limit)."""
    method = METHODS.get(config.synthesis.method)
    parts = parts_of(resolve_program(config, method)[0].program)
    syn = config.synthesis
    spec = config.teacher
    walk = _Walk(build_adapter(spec), spec.model, lengths, tally, targets, spec.output_limit, ask)
    adapter = _walking_adapter(walk.adapter, walk)

    async def task(kind: str, **inputs: Any) -> dspy.Prediction:
        walk.work = kind
        with stage(TASK_STAGES[kind]):
            return await acall_part(parts[kind], **inputs)

    async def run() -> None:
        with dspy.context(lm=dspy.utils.DummyLM([]), adapter=adapter, trace=None):
            for ref in refs[:k]:
                seed = method.seed_item(ref, syn)
                if seed is not None:
                    await task("sample", **method.sample_inputs(ref, seed.instruction, None))
                    continue
                fb = None
                if method.collects_feedback:
                    fb = feedback_record(ref, await task("feedback", reference=ref))
                pred = await task("unit", **method.unit_inputs(ref, method.features[0], fb, syn))
                await task("sample", **method.sample_inputs(ref, pred.new_instructions[0], fb))

    run_sync(run())
    return walk


def work_counts(config: Config, n_refs: int) -> dict[str, int]:
    """How many references, units and samples a run of this size does (pure): `units` assume 90% of new
    instructions survive dedup."""
    return METHODS.get(config.synthesis.method).work_counts(config.synthesis, n_refs)


class LocalTime(BaseModel):
    """How long a run on a local model the command serves takes here: its tokens at the speed its server measured now
    (`local_server.measure_speed`: requests the size of the run's mean call, all its slots busy; not the run's
    calls, and not in its ledger). The speed is None when nothing served the model to measure (the estimate was made before it ran)."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="The local server's base URL.")
    slots: int = Field(description="The requests it decodes at once.")
    prompt_per_s: float | None = Field(None, description="Prompt tokens it read a second, all its slots busy.")
    completion_per_s: float | None = Field(None, description="Completion tokens it wrote a second, likewise.")
    seconds: float | None = Field(
        None, description="The run's seconds here: at that speed, or as a pilot took them (None: not measured)."
    )


class Estimate(Result):
    """What a synthesis config will cost before it runs (estimate.json): calls, tokens and cost per stage and in
    total, online (default tier), on the flex tier and at the batch price, with a range; and each way's wall time."""

    model: str
    method: str
    size: int
    references: int
    config_hash: str | None = Optional(
        "The hash of the config it prices, its endpoints left out (refed_dspy.config.config_hash): a run's summary "
        "states the error of an estimate of its own config only (a run resumed at a moved endpoint is the same run)."
    )
    work: dict[str, int] = Field(description="Tasks of each kind the run will do: feedback, unit, sample.")
    lengths: dict[str, int] = Field(description="Mean tokens of the references' instructions and responses.")
    price_known: bool
    unpriced: str | None = Optional("Why no price is known for the teacher, and the fields that price it.")
    batch_price_factor: float
    stages: dict[str, dict[str, Any]]
    total: dict[str, Any]
    adapter: dict[str, Any] | None = Optional("The output format the prompts were built with, and why.")
    tokenizer: str | None = Optional("What counted the prompts' tokens.")
    reasoning: str | None = Optional(
        "A reasoning teacher: its hidden reasoning tokens (billed as output) cannot be counted without calling it; "
        "`--pilot N` measures them (`reasoning_tokens` in each row)."
    )
    pilot: dict[str, Any] | None = Optional(
        "`--pilot N`: the real run the figures are projected from (its dir, samples, calls and cost)."
    )
    service_tier: str = Field("default", description="teacher.service_tier: the tier the run's calls will ask for.")
    tiers: list[str] = Field(
        default_factory=list,
        description="The tiers priced beside the default one (`<tier>_cost_usd` in each row): flex where the model has "
        "a flex price, and the tier the config asks for.",
    )
    wall: dict[str, Any] | None = Optional(
        "Expected wall time in seconds online (default tier), on the flex tier and in batch (typical and at most), "
        "and what it assumes (refed_dspy.synthesis.estimate); for a hosted teacher."
    )
    replies: ReplyLengths | None = Optional(
        "The reply lengths assumed (tokens a call, by stage) and where they come from: the defaults, this model's "
        "earlier runs, or the pilot (refed_dspy.synthesis.replies)."
    )
    local: LocalTime | None = Optional(
        "A local teacher the command serves ([local]): the run's time here, at the speed its server measured now, or "
        "as a pilot took it."
    )
    max_cost_usd: float | None = Optional("synthesis.max_cost_usd: the run stops before its cost would pass it.")
    mode: str = Field("online", description="synthesis.mode: online, or batch (priced at the batch column).")


def _measured_before(config: Config, say: Callable[[str], None]) -> tuple[dict[str, int], list[str]]:
    """The teacher's reply lengths by stage measured on its earlier runs at the same endpoint, and those runs' dirs
    (`earlier_runs`), said in one line naming them."""
    model, where = config.teacher.model, fingerprint(config)["teacher"]["api_base"]  # as a run's fingerprint has it
    measured, runs = earlier_runs(config.run.dir, model, config.synthesis.method, config.teacher.max_tokens, where)
    if runs:
        say(f"reply lengths of {model} measured on its earlier runs: {', '.join(runs)}")
    return measured, runs


def estimate(
    config: ConfigLike | None,
    references: list[Reference] | None = None,
    walk_refs: int = 4,
    say: Callable[[str], None] | None = None,
    earlier: bool = True,
    local_speed: bool = True,
    waits: Callable[[str], None] | None = None,
) -> Estimate:
    """Calls, tokens and cost per stage and in total, online and in batch, with a range. No call of the run is made
    (a local teacher that serves is asked the run's prompts of two references and a few tokens to measure its speed:
    `local_speed`).

    Args:
        config: the synthesis config to estimate: a Config, a TOML path, a mapping of its tables, or None for the
            defaults.
        references: the references to walk (None: read [seeds]).
        walk_refs: how many references to walk through the prompts.
        say: hears what it is doing, step by step (the CLI prints it on stderr).
        earlier: size the replies of each stage as this model's earlier runs measured them, where there are some
            (refed_dspy.synthesis.replies); False: always as the defaults make them.
        local_speed: for a local teacher the command serves ([local]), time the run at the speed its server measures
            now, when it serves (else the time is said to be unknown until it does); and where no earlier run
            measured its replies, size them on what it writes to the run's prompts now (`local_replies`).
        waits: hears the steps that ask the local model (they take seconds to minutes); None: `say`.

    Returns:
        The Estimate; its `replies` say the reply lengths assumed and where they come from.

    Raises:
        ConfigError, SeedError: the config or its seeds are unusable.
    """
    config = as_config(config)
    say = say or (lambda _line: None)
    waits = waits or say
    references = _references(config, references, say)
    model = config.teacher.model
    tokenizer = tokenizer_of(model)
    adapter = build_adapter(config.teacher).choice.as_dict()
    measured, runs = _measured_before(config, say) if earlier else ({}, [])
    walked = min(walk_refs, len(references))
    asked = local_replies(config, references, waits) if local_speed and not measured else {}
    targets = {**{name: max(1, round(fmean(t))) for name, t in asked.items()}, **measured}
    lengths, tally, capped = _walked(config, references, walked, targets, say, adapter["mode"])
    counts = work_counts(config, len(references))
    price, tiers = priced_tiers(config)
    factor = config.teacher.batch_price_factor
    stages = scaled_stages(
        config, tally, dict.fromkeys(("feedback", "unit", "sample"), walked), counts, len(references)
    )
    total = _total_priced(stages, price, factor, tiers)
    local = local_time(config, total, waits) if local_speed else None
    return Estimate(
        **{
            "model": model,
            "method": config.synthesis.method,
            "size": config.synthesis.size,
            "config_hash": config_hash(config, endpoints=False),
            "references": len(references),
            "work": counts,
            "lengths": {"response": lengths.response, "instruction": lengths.instruction},
            "price_known": price is not None,
            "unpriced": None if price is not None else unpriced_text(config.teacher, "teacher"),
            "batch_price_factor": factor,
            "stages": {k: _rounded(v) for k, v in stages.items()},
            "total": _rounded(total),
            "adapter": adapter,
            "tokenizer": tokenizer,
            "replies": walked_replies(config, stages, measured, runs, lengths, capped, asked),
            "service_tier": config.teacher.service_tier,
            "tiers": list(tiers),
            "wall": None if local is not None else run_wall(config, total, counts, len(stages)),
            "local": local,
            "reasoning": reasoning_note(config),
            "max_cost_usd": config.synthesis.max_cost_usd,
            "mode": config.synthesis.mode,
        }
    )


def _references(config: Config, given: list[Reference] | None, say: Callable[[str], None]) -> list[Reference]:
    """The references the estimate walks: those given, else the config's seeds, read."""
    if given is not None:
        return given_references(given)
    say(f"reading the seeds ({config.seeds.source or 'the embedded seed set'})")
    return read_seeds(config.seeds)[0]


def _total_priced(stages: dict[str, dict[str, Any]], price: Any, factor: float, tiers: dict[str, Any]) -> dict:
    """The stages' rows summed into the total row, each row priced in place and the total's cost the sum of theirs
    (each stage's calls are priced at their own prompt's length: a long-prompt price step is a stage's, not the
    run's)."""
    total = dict.fromkeys(_TOKEN_ROW, 0.0)
    for row in stages.values():
        for key in total:
            total[key] += row[key]
        _cost(row, price, factor, tiers)
    _cost(total, price, factor, tiers)  # the keys a total row has; its figures are the stages' sums
    for key in [k for k in total if k.endswith("_usd")]:
        # a stage that read nothing from the prompt cache costs, without it, what it costs
        figures = [row.get(key, row.get("cost_usd") if key == "uncached_cost_usd" else None) for row in stages.values()]
        total[key] = None if None in figures else sum(figures)
    return total


def _walked(
    config: Config,
    references: list[Reference],
    k: int,
    targets: dict[str, int],
    say: Callable[[str], None],
    mode: str,
) -> tuple[Lengths, Tally, set[str]]:
    """The references' mean lengths (of the first few), and the walk of the first `k` of them: its tally and the
    stages whose replies were cut to the output limit."""
    model = config.teacher.model
    sample_refs = references[: max(k, 1) * 4]
    n, of = len(sample_refs), len(references)
    say(f"counting the tokens of {f'{n} of the {of}' if n < of else f'all {of}'} references with {tokenizer_of(model)}")
    lengths = Lengths(
        response=round(fmean(count_tokens(model, r.response) for r in sample_refs)),
        instruction=round(fmean(count_tokens(model, r.instruction) for r in sample_refs)),
    )
    tally = Tally()
    say(f"walking {k} references through the {config.synthesis.method} prompts ({mode} outputs; no LM is called)")
    return lengths, tally, _walk(config, references, lengths, tally, k, targets).capped


def walked_replies(
    config: Config,
    stages: dict[str, dict[str, Any]],
    measured: dict[str, int],
    runs: list[str],
    lengths: Lengths,
    capped: set[str],
    asked: dict[str, list[int]] | None = None,
) -> ReplyLengths:
    """The reply lengths a walk assumed, by stage (its scaled completion tokens a call), and where each came from:
    measured on this model's earlier `runs` where `measured` has the stage, else asked of the local model now where
    `asked` has it (`local_replies`), else the defaults."""
    asked = asked or {}

    def source(name: str) -> str:
        return "measured" if name in measured else "asked" if name in asked else "default"

    return ReplyLengths(
        tokens={name: round(row["completion_tokens"] / row["calls"]) for name, row in stages.items() if row["calls"]},
        source={name: source(name) for name, row in stages.items() if row["calls"]},
        measured_in=runs if any(name in measured for name in stages) else [],
        references={"response": lengths.response, "instruction": lengths.instruction},
        max_tokens=config.teacher.output_limit,
        capped=[name for name in stages if name in capped],
        size=config.synthesis.size,
        asked_calls=max((len(t) for name, t in asked.items() if name not in measured), default=None),
    )


_TOKEN_ROW = ("calls", "prompt_tokens", "cached_tokens", "cache_write_tokens", "completion_tokens")


def scaled_stages(
    config: Config, tally: Tally, walked: dict[str, int], counts: dict[str, int], n_refs: int
) -> dict[str, dict[str, Any]]:
    """Each stage's calls and tokens over the whole run: the walked calls of each kind of work, scaled from the
    `walked` pieces of it to its `counts`; the prompt prefix a provider caches by itself (OpenAI's) counted as cached
    on every call after the first, and where it caches what a request marks (Anthropic's, with `prompt_cache` on) the
    repeated parts of the walked prompts counted as written once and read after (`_marked`)."""
    model = config.teacher.model
    provider = provider_for(model)
    cache = provider.prefix_cache  # None: nothing is cached unless asked
    marked = provider.marked_cache if config.teacher.prompt_cache else None
    reached = references_reached(config, counts, n_refs)
    stages: dict[str, dict[str, Any]] = {}
    for (work, stage_name), calls in tally.calls.items():
        per = len(calls) / walked[work]
        n = per * counts[work]
        prompt = fmean(c[0] for c in calls) * n
        completion = fmean(c[1] for c in calls) * n
        cached = written = 0.0
        if marked is not None:
            cached, written = _marked(tally.repeated[(work, stage_name)], marked, model, n, min(reached, n))
        elif cache is not None and len(calls) > 1:
            shared = count_tokens(model, common_prefix(tally.prompts[(work, stage_name)]))
            cached = cacheable_tokens(shared, cache) * max(0.0, n - 1)
        row = stages.setdefault(stage_name, dict.fromkeys(_TOKEN_ROW, 0.0))
        row["calls"] += n
        row["prompt_tokens"] += prompt
        row["cached_tokens"] += cached
        row["cache_write_tokens"] += written
        row["completion_tokens"] += completion
    return stages


def references_reached(config: Config, counts: dict[str, int], n_refs: int) -> int:
    """How many references a run of this size reaches: those its units come from, in the order a run takes them
    (every reference once for a feature before the next feature: `unit_order`), or one a sample for a method with no
    units (pure)."""
    method = METHODS.get(config.synthesis.method)
    if not method.features:
        return max(1, min(n_refs, counts["sample"]))
    units = itertools.islice(unit_order(max(1, n_refs), method.features), counts["unit"])
    return max(1, len({unit.ref_index for unit in units}))


def _marked(
    repeated: list[tuple[list[int], int]], cache: MarkedCache, model: str, calls: float, refs: float
) -> tuple[float, float]:
    """(read, written) prompt tokens of a step's `calls` under a cache of marked prefixes, from the repeated parts of
    its walked prompts (their mean lengths)."""
    if not repeated:
        return 0.0, 0.0
    kept = [repeated_tokens(ends, last, cache.minimum(model)) for ends, last in repeated]
    return marked_cache_tokens(calls, refs, fmean(k[0] for k in kept), fmean(k[1] for k in kept))


def priced_tiers(config: Config) -> tuple[Any, dict[str, Any]]:
    """The teacher's default-tier price (the online column), and its prices on the tiers set beside it: flex where
    the model has a flex price, and the tier the config asks for."""
    spec = config.teacher
    names = dict.fromkeys(t for t in ("flex", spec.service_tier) if t != "default")
    tiers = {name: p for name in names if (p := price_of(spec, tier=name)) is not None}
    return price_of(spec, tier="default"), tiers


def run_wall(
    config: Config,
    total: dict[str, Any],
    counts: dict[str, int],
    stages: int,
    seconds_per_call: float | None = None,
) -> dict[str, Any]:
    """The run's expected wall time online, on flex and in batch (refed_dspy.synthesis.estimate): its stages in a
    chain, its concurrency, and as many batch waves as `batch.max_in_flight` makes of its largest kind of work."""
    waves = max(1, math.ceil(max(counts.values(), default=0) / config.batch.max_in_flight))
    return wall_times(
        total,
        stages,
        config.synthesis.concurrency,
        waves,
        seconds_per_call=seconds_per_call,
        measured_on=config.teacher.service_tier,
    )


def reasoning_note(config: Config) -> str | None:
    """What a walk-through cannot count for a reasoning teacher, and how to measure it (None for another model)."""
    spec = config.teacher
    # a model that may reason (Anthropic's, Gemini's) reasons only when asked to; a held one (OpenAI's) always does
    always = spec.sampling.least_max_tokens is not None
    if not spec.sampling.reasoning or not (always or spec.reasoning_effort):
        return None
    effort = (
        f"reasoning_effort {spec.reasoning_effort}" if spec.reasoning_effort else "the model's own reasoning_effort"
    )
    pilot = min(PILOT_SIZE, config.synthesis.size - 1)  # the pilot the lengths' line offers too
    measure = f"; `refed estimate --pilot {pilot}` measures them" if pilot >= 1 else ""
    return (
        f"{spec.model} reasons before it answers ({effort}): its hidden reasoning tokens, billed as output, are not in "
        f"these figures{measure}"
    )


def priced(row: dict[str, Any], price: Any, factor: float, tiers: dict[str, Any] | None = None) -> dict[str, Any]:
    """A stage's (or the total's) calls and tokens with their cost online, on `tiers` and in batch, and its range;
    rounded."""
    out = dict(row)
    _cost(out, price, factor, tiers or {})
    return _rounded(out)


def _costs(row: dict[str, Any], price: Any) -> tuple[float, float, float]:
    """A row's cost at `price`: its point, low and high."""
    prompt, cached, completion = int(row["prompt_tokens"]), int(row["cached_tokens"]), int(row["completion_tokens"])
    written, calls = int(row.get("cache_write_tokens") or 0), max(1.0, float(row.get("calls") or 0))
    point = price.cost(prompt, completion, cached, written, calls=calls)  # priced at its calls' mean prompt
    low = price.cost(prompt, int(completion * _LOW), cached, written, calls=calls)
    high = price.bound(  # no cache hit at all
        int(prompt * (1 + _REPAIRS)), int(completion * _HIGH * (1 + _REPAIRS)), calls=calls * (1 + _REPAIRS)
    )
    return point, low, high


def _cost(row: dict[str, Any], price: Any, factor: float, tiers: dict[str, Any]) -> None:
    for name, at in tiers.items():  # a tier priced beside the default one
        point, low, high = _costs(row, at)
        row.update({f"{name}_cost_usd": point, f"{name}_cost_low_usd": low, f"{name}_cost_high_usd": high})
    if price is None:
        row.update(cost_usd=None, cost_low_usd=None, cost_high_usd=None, batch_cost_usd=None)
        return
    point, low, high = _costs(row, price)
    prompt, completion = int(row["prompt_tokens"]), int(row["completion_tokens"])
    if row.get("cached_tokens") or row.get("cache_write_tokens"):  # what the prompt cache saves: the same tokens
        # with nothing read from it or written to it
        row["uncached_cost_usd"] = price.cost(prompt, completion, calls=max(1.0, float(row.get("calls") or 0)))
    row.update(
        cost_usd=point,
        cost_low_usd=low,
        cost_high_usd=high,
        batch_cost_usd=point * factor,
        batch_cost_low_usd=low * factor,
        batch_cost_high_usd=high * factor,
    )


def _rounded(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (round(v, 6) if isinstance(v, float) and "cost" in k else round(v) if isinstance(v, float) else v)
        for k, v in row.items()
    }


def format_estimate(e: Estimate) -> str:
    """The table `refed estimate` prints."""

    def money(v: float | None) -> str:
        return "unknown" if v is None else f"${v:,.4f}"

    pilot = e.get("pilot")
    basis = (
        f"projected from a pilot run of {pilot['samples']} samples ({pilot['calls']} calls, "
        f"{money(pilot['cost_usd'])}, in {pilot['dir']})"
        if pilot
        else f"references average {e['lengths']['instruction']} instruction and {e['lengths']['response']} "
        "response tokens"
    )
    lines = [
        f"estimate for {e['size']} samples ({e['method']}, teacher {e['model']}, {e['references']} references; {basis})",
    ]
    if e.get("adapter"):
        a = e["adapter"]
        counted = f"; tokens counted with {e['tokenizer']}" if e.get("tokenizer") and not pilot else ""
        lines.append(f"  assumed: {a['mode']} outputs (schema dialect {a['dialect']}: {a['reason']}){counted}")
    if e.get("replies"):
        lines.append(f"  {e['replies'].text()}")
    served = e.get("local") is not None  # a model the command serves: no flex tier, no batch API
    tiers = [] if served else list(dict.fromkeys(t for t in ("flex", *(e.get("tiers") or [])) if t != "default"))
    thought = bool(e["total"].get("reasoning_tokens"))  # measured by a pilot: of the completion, the reasoning
    lines += [
        f"  {'stage':<16}{'calls':>8}{'prompt tok':>13}{'completion tok':>16}"
        + (f"{'of it reasoning':>17}" if thought else "")
        + f"{'online':>12}"
        + "".join(f"{t:>12}" for t in tiers)
        + ("" if served else f"{'batch':>12}"),
    ]
    for name, row in [*e["stages"].items(), ("total", e["total"])]:
        lines.append(
            f"  {name:<16}{row['calls']:>8,}{row['prompt_tokens']:>13,}{row['completion_tokens']:>16,}"
            + (f"{row.get('reasoning_tokens') or 0:>17,}" if thought else "")
            + f"{money(row['cost_usd']):>12}"
            + "".join(f"{_tier_money(row, t):>12}" for t in tiers)
            + ("" if served else f"{money(row.get('batch_cost_usd')):>12}")
        )
    t = e["total"]
    if t["cost_usd"] is not None and pilot:
        lines.append(f"  (measured on {pilot['samples']} samples: a larger pilot narrows the projection's error)")
    elif t["cost_usd"] is not None:
        beside = "".join(
            f", {tier} {money(t[f'{tier}_cost_low_usd'])} to {money(t[f'{tier}_cost_high_usd'])}"
            for tier in tiers
            if t.get(f"{tier}_cost_usd") is not None
        )
        batch = "" if served else f", batch {money(t['batch_cost_low_usd'])} to {money(t['batch_cost_high_usd'])}"
        lines.append(
            f"  range: online {money(t['cost_low_usd'])} to {money(t['cost_high_usd'])}{beside}{batch} (replies 0.5x "
            "to 1.6x as long, 10% repaired, top: no prompt-cache hit)"
        )
    else:
        lines.append(f"  {e.get('unpriced') or 'no price known'}")
    share = prompt_cache_text(prompt_cache_share(t))
    if share:
        without = f"; without it {money(t['uncached_cost_usd'])} online" if t.get("uncached_cost_usd") else ""
        lines.append(f"  prompt cache: {share}{without}")
    if "flex_cost_usd" not in t and t["cost_usd"] is not None and not served:
        lines.append("  flex: this model has no flex price (LiteLLM's price map, or teacher.tier_prices.flex)")
    asked = e.get("service_tier") or "default"
    if asked != "default" and not served:
        lines.append(f"  the config asks for the {asked} tier (teacher.service_tier): its column is what the run costs")
    if e.get("wall"):
        lines.append(wall_line(e["wall"], flex="flex_cost_usd" in t))
    if served and pilot:
        lines.append(
            f"  wall time: about {rough_duration(e['local'].seconds)} here (the pilot's {pilot['samples']} samples "
            f"took {rough_duration(pilot['wall_s'])} on the local server at {e['local'].url})"
        )
    elif served:
        lines.append(f"  wall time: {local_text(e['local'], t)}")
    if e.get("reasoning") and not pilot:
        lines.append(f"  not counted: {e['reasoning']}")
    said = budget_line(e)
    return "\n".join([*lines, *([said] if said else [])])


def budget_line(e: Estimate) -> str | None:
    """What synthesis.max_cost_usd does to the run at the estimate (the column the run pays: batch in batch mode, else
    the tier it asks for): where it stops the run, or that the range's top passes it; None when it stops nothing."""
    cap, t, tier = e.get("max_cost_usd"), e["total"], e.get("service_tier") or "default"
    column = "batch_" if e.get("mode") == "batch" else ("" if tier == "default" else f"{tier}_")
    if f"{column}cost_usd" not in t:  # a tier with no price of its own
        column = ""
    cost, high = t.get(f"{column}cost_usd"), t.get(f"{column}cost_high_usd")
    if not cap or not cost:
        return None
    if cost > cap:
        near = int(e["size"] * cap / cost)
        return (
            f"  budget: synthesis.max_cost_usd = ${cap:,.4f} stops the run near {near:,} of its {e['size']:,} samples "
            f"(the estimate is ${cost:,.4f}); raise it, or lower synthesis.size"
        )
    if high and high > cap:
        return (
            f"  budget: synthesis.max_cost_usd = ${cap:,.4f} may stop the run early (the range's top is ${high:,.4f})"
        )
    return None


def _tier_money(row: dict[str, Any], tier: str) -> str:
    value = row.get(f"{tier}_cost_usd")
    return "-" if f"{tier}_cost_usd" not in row else "unknown" if value is None else f"${value:,.4f}"


def wall_line(w: dict[str, Any], flex: bool = True) -> str:
    """The estimate's wall-time line: online, flex (`flex`: the model has a flex tier) and batch side by side, and
    what they rest on."""
    basis = (
        f"{w['seconds_per_call']:.3g} s a call, {w['basis']}"
        if w.get("basis") != "assumed"
        else f"assumed {w['seconds_per_call']:.3g} s a call"
    )
    waves = f" x {w['waves']} waves" if w.get("waves", 1) > 1 else ""
    on_flex = f", flex about {rough_duration(w['flex_s'])} (slower replies)" if flex else ""
    return (
        f"  wall time: online about {rough_duration(w['online_s'])}{on_flex}, batch about "
        f"{rough_duration(w['batch_s'])} and up to {rough_duration(w['batch_max_s'])} ({w['stages']} stages in a "
        f"chain{waves}, each waiting for its batches); online at synthesis.concurrency, {basis}"
    )


log = logging.getLogger(__name__)


def seconds_for(total: dict[str, float], speed: Speed) -> float:
    """Seconds to read the prompts (what is not cached) and write the completions of `total` (an estimate's total
    row) at `speed`."""
    read = max(0.0, total["prompt_tokens"] - total.get("cached_tokens", 0.0))
    return read / speed.prompt_per_s + total["completion_tokens"] / speed.completion_per_s


def eta_line(
    config: Config,
    server: LocalServer,
    references: list[Reference] | None = None,
    waits: Callable[[str], None] | None = None,
    left: int | None = None,
) -> str | None:
    """The line that says how long this run takes here (None when the estimate or the speed cannot be had): the
    estimate `refed estimate` makes while the local model serves (`server`: the one started for the run), its reply
    lengths and their source, and its speed measured now; `references`: the run's, when they are read already (else
    [seeds] is read); `waits` hears the steps that ask the model before it (seconds at a low load, minutes at a high
    one); `left`: the samples a resumed run has yet to make (the estimate is of those)."""
    size = config.synthesis.size
    left = size if left is None else min(left, size)
    if left < size:
        config = config.model_copy(update={"synthesis": config.synthesis.model_copy(update={"size": left})})
    try:
        est = estimate(config, references, waits=waits)
    except RefedError as err:  # the run will say it better
        log.debug("no time estimate: %s", err)
        return None
    if est.local is None or est.local.seconds is None:
        log.debug("no time estimate: the local server at %s did not say its speed", server.url)
        return None
    replies = f"; {est.replies.text(offer=False)}" if est.replies is not None else ""  # the run measures them
    if left < size:
        run = f"the last sample of this run of {size} takes" if left == 1 else f"the {left} samples left of {size} take"
    else:
        run = f"a run of {size} samples takes"
    return f"local model: {run} {local_text(est.local, est.total)}{replies}"


ASKED_REFERENCES = 2  # the references a local model is asked the run's prompts of, at once, before the run


def local_replies(config: Config, references: list[Reference], say: Callable[[str], None]) -> dict[str, list[int]]:
    """For a teacher the command serves itself ([local]) while it serves: the tokens each call it is asked writes, by
    stage, asked now the prompts of `ASKED_REFERENCES` references' way through the run's program (feedback, then a
    unit from it, then a sample from that: each step on the model's own reply where the adapter can read it), the
    references at once, in daemon threads (a stop is not held up by them); {} for any other teacher, or when it does
    not answer. A reply that breaks a later step ends its walk there, with what was asked so far. A small model writes
    far shorter replies than good references, and its stages' lengths differ in their own ways (SmolLM2: drafts of 35
    tokens, improvements of 284)."""
    url = served_teacher(config)
    if url is None or not references or not listening(url):
        return {}
    settings = config.teacher.lm_kwargs(0, role="teacher")
    refs = references[:ASKED_REFERENCES]
    say(
        f"asking the local model at {url} the {config.synthesis.method} prompts of {len(refs)} references, to see how "
        "long it writes at each stage"
    )
    tokens: dict[str, list[int]] = defaultdict(list)
    lock = threading.Lock()

    def ask(messages: list[dict[str, Any]], kwargs: dict[str, Any]) -> Reply | None:
        reply = sample_reply(url, messages, {**settings, **kwargs})
        if reply is not None:
            with lock:
                tokens[current_stage()].append(reply.tokens)
        return reply

    def one(ref: Reference) -> None:
        model = config.teacher.model
        lengths = Lengths(count_tokens(model, ref.response), count_tokens(model, ref.instruction))
        try:
            _walk(config, [ref], lengths, Tally(), 1, {}, ask)
        except Exception as err:  # noqa: BLE001 - the model's reply broke a later step: the lengths so far stand
            log.debug("the walk on the local model's replies stopped: %s", err)

    walks = [threading.Thread(target=one, args=(ref,), daemon=True, name="refed-ask-local") for ref in refs]
    for walk in walks:
        walk.start()
    for walk in walks:
        walk.join()
    return dict(tokens)


def local_time(config: Config, total: dict[str, Any], say: Callable[[str], None]) -> LocalTime | None:
    """For a teacher the command serves itself ([local]): the run's time here at the speed its server measures now,
    or a LocalTime without a speed when nothing serves it yet; None for any other teacher."""
    url, slots = served_teacher(config), config.local.slots
    if url is None:
        return None
    if not listening(url):
        return LocalTime(url=url, slots=slots)
    read, written = probe_sizes(total)
    say(
        f"measuring how fast the local model at {url} is now ({slots} requests at once, each reading {read} tokens and "
        f"writing {written}: the run's calls' size, not its calls)"
    )
    return timed(url, slots, total, measure_speed(url, slots, prompt_tokens=read, completion_tokens=written))


def pilot_local_time(config: Config, seconds: float) -> LocalTime | None:
    """For a teacher the command serves itself: the run's time here as a pilot measured it (`seconds`, the pilot's
    time scaled to the run); None for any other teacher."""
    url = served_teacher(config)
    return LocalTime(url=url, slots=config.local.slots, seconds=round(seconds, 1)) if url is not None else None


def served_teacher(config: Config) -> str | None:
    """The base URL of the local model the command serves for the teacher ([local]); None for any other teacher."""
    return next(iter(served_roles(config.local, {"teacher": config.teacher})), None)


def probe_sizes(total: dict[str, Any]) -> tuple[int, int]:
    """The tokens each request that times the local server reads and writes (pure): the run's mean call (its prompt
    less what the server keeps between calls), the writing cut to 64 tokens so that the check takes one short call's
    time; requests of a few tokens measured a loaded 2-core machine three times faster than its run went."""
    calls = max(1.0, total["calls"])
    read = (total["prompt_tokens"] - total.get("cached_tokens", 0.0)) / calls
    return int(min(2048, max(32, read))), int(min(64, max(8, total["completion_tokens"] / calls)))


def timed(url: str, slots: int, total: dict[str, Any], speed: Speed | None) -> LocalTime:
    """The LocalTime of a run whose calls and tokens are `total` (an estimate's total row) at `speed` (pure)."""
    if speed is None:
        return LocalTime(url=url, slots=slots)
    return LocalTime(
        url=url,
        slots=slots,
        prompt_per_s=round(speed.prompt_per_s, 1),
        completion_per_s=round(speed.completion_per_s, 2),
        seconds=round(seconds_for(total, speed), 1),
    )


def local_text(local: LocalTime, total: dict[str, Any]) -> str:
    """How long the run takes here, and what that rests on, as `refed estimate` and `refed synthesize` both say it."""
    if local.seconds is None or local.prompt_per_s is None or local.completion_per_s is None:
        return (
            "not known until the local model serves: its speed is this machine's, measured when `refed synthesize` "
            f"starts it (which then says how long the run takes), or by `refed estimate` while it serves at {local.url}"
        )
    read = total["prompt_tokens"] - total.get("cached_tokens", 0)
    return (
        f"about {rough_duration(local.seconds)} here ({total['calls']:,.0f} LM calls, "
        f"{total['completion_tokens']:,.0f} tokens to write at {local.completion_per_s:.1f}/s and {read:,.0f} to read "
        f"at {local.prompt_per_s:.0f}/s: the speed the local server at {local.url} measured just now, "
        f"{local.slots} requests at once)"
    )


TOKENS_PER_S = 60.0  # a hosted model's output speed, one call (assumed where no pilot measured it)
FIRST_TOKEN_S = 0.8  # the wait before a call's first token (assumed likewise)
FLEX_SLOWER = 2.0  # flex calls take about this many times as long as default-tier ones (assumed)
BATCH_ROUND_S = 3600.0  # a batch's typical turnaround (assumed)
BATCH_ROUND_MAX_S = 24 * 3600.0  # the longest a provider's batch may take: its completion window


def call_seconds(calls: float, completion_tokens: float) -> float:
    """The assumed seconds of one default-tier call of a row of `calls` calls writing `completion_tokens` in all."""
    per_call = completion_tokens / calls if calls else 0.0
    return FIRST_TOKEN_S + per_call / TOKENS_PER_S


def wall_times(
    total: dict[str, Any],
    stages: int,
    concurrency: int,
    waves: int = 1,
    seconds_per_call: float | None = None,
    measured_on: str = "",
) -> dict[str, Any]:
    """Expected wall seconds of a run whose calls and tokens are `total` (an estimate's total row), in a chain of
    `stages` stages, online (default tier) and flex at `concurrency` calls in flight, and in batch (typical and at
    most, `waves` times over). `seconds_per_call`: what one call took on a pilot on tier `measured_on` (None:
    assumed)."""
    calls = float(total.get("calls") or 0.0)
    per_call = seconds_per_call
    if per_call is not None and measured_on == "flex":
        per_call /= FLEX_SLOWER  # the pilot ran on flex: its default-tier calls are that much faster
    if per_call is None:
        per_call = call_seconds(calls, float(total.get("completion_tokens") or 0.0))
    lanes = max(1, concurrency)
    online = calls * per_call / lanes + stages * per_call  # the last calls of each stage wait for those before
    return {
        "online_s": round(online, 1),
        "flex_s": round(online * FLEX_SLOWER, 1),
        "batch_s": round(stages * waves * BATCH_ROUND_S, 1),
        "batch_max_s": round(stages * waves * BATCH_ROUND_MAX_S, 1),
        "stages": stages,
        "waves": waves,
        "seconds_per_call": round(per_call, 3),
        "basis": f"measured on the pilot ({measured_on} tier)" if seconds_per_call is not None else "assumed",
    }
