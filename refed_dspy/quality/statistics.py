"""Reflection-Tuning's data statistics of a run or a seed file, from the scorer (refed_dspy.scoring): per pair the
instruction's perplexity, the response's alone and given the instruction, IFD and coherence; per group (the run's
references, its drafts, its final responses) their means, so the effect of improving a response shows.

`refed score FILE_OR_RUN --out FILE.jsonl` writes one line per pair (`score_source`); `refed report --score` adds the
table to report.json, report.html and its text (`statistics_block`), `refed compare --score` a column set per method,
and an export's dataset card carries the table of the report it finds. On a larger run the report scores every
reference and a stated sample of the samples ([scoring] report_pairs), unless asked for all.
"""

from __future__ import annotations

import math
import random
import statistics as pystats
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import dspy
from pydantic import Field

from refed_dspy.clients.destination import checking, refusal_in
from refed_dspy.config import Config, SeedsConfig
from refed_dspy.config.load import ConfigLike, given_config
from refed_dspy.errors import ConfigError, RefedError, RunAborted, RunInterrupted
from refed_dspy.scoring import PairScore, ScoreCache, Scorer, open_scorer
from refed_dspy.scoring.local import LocalEmbedder
from refed_dspy.scoring.rows import ScoreRows
from refed_dspy.store.jsonl import read_jsonl
from refed_dspy.store.records import final_response
from refed_dspy.store.results import Result
from refed_dspy.store.rundir import RunDir
from refed_dspy.store.seeds import read_seeds

STATS = ("instruction_ppl", "response_ppl", "response_ppl_given_instruction", "ifd", "coherence")
GROUPS = ("references", "drafts", "final responses")


@dataclass(frozen=True)
class Pair:
    """One pair to score: its id, instruction and response, and the sample's draft when it has one apart."""

    id: str
    instruction: str
    response: str
    draft: str | None = None


@dataclass(frozen=True)
class Pairs:
    """The pairs a source gives to score, and what of it is not among them.

    Attributes:
        items: the pairs, in the source's order.
        rows: the rows the source held.
        skipped: the rows that cannot be scored (too long, empty, not text, a duplicate...).
        why: those rows by reason, in words ('' when none), as the seeds line gives them.
    """

    items: list[Pair]
    rows: int
    skipped: int = 0
    why: str = ""


def seed_pairs(source: str) -> Pairs:
    """The pairs of a seed file or dataset (anything [seeds] source takes), with the rows its reading skipped and why;
    SeedError when it cannot be read."""
    refs, report = read_seeds(SeedsConfig(source=source))
    pairs = [Pair(r.id, r.instruction, r.response) for r in refs]
    return Pairs(pairs, report.rows, sum(report.skipped.values()), report.skipped_text())


def run_pairs(rundir: RunDir) -> list[Pair]:
    """A run's samples as pairs: the instruction with the final response, and the draft when it was improved."""
    out = []
    for s in read_jsonl(rundir.samples):
        final, draft = final_response(s), (s.get("response") or "").strip()
        out.append(Pair(s["meta"]["id"], s["instruction"], final, draft if s.get("improved_response") else None))
    return out


class ScoreFile(Result):
    """What `refed score` wrote: the pairs scored, where, with which model, their mean figures and the time taken."""

    source: str
    out: str
    pairs: int = Field(description="The pairs whose rows the file holds.")
    model: str
    max_tokens: int
    coherence_from: str | None
    means: dict[str, float | None] = Field(description="The mean of each statistic over the pairs (final responses).")
    seconds: float
    rows: int = Field(0, description="The rows the source held (a run dir: its samples).")
    skipped: int = Field(0, description="The rows that could not be scored (too long, empty, not text, a duplicate).")
    skipped_why: str = Field("", description="Those rows by reason, in words ('' when none was skipped).")
    asked: int = Field(0, description="The pairs the source gave to score (more than `pairs` when stopped).")
    resumed: int = Field(0, description="The pairs whose rows the file held already when this scoring began.")
    dropped: int = Field(
        0, description="The lines of the file dropped then: torn by a kill, of another model, of no pair of the source."
    )
    status: Literal["complete", "interrupted"] = "complete"


DATASET_MARKERS = ("state.json", "dataset_dict.json")  # what datasets' save_to_disk writes into a folder


def pairs_of(source: str | Path, limit: int | None = None) -> Pairs:
    """The pairs of a run dir (its samples, with their drafts) or of a seed source (the first `limit`), with the rows
    skipped; ConfigError or SeedError, before any model is loaded, when there are none."""
    path = Path(source)
    if (path / "samples.jsonl").exists():
        samples = run_pairs(RunDir(path))
        pairs = Pairs(samples, len(samples))
    elif path.is_dir() and not any((path / name).exists() for name in DATASET_MARKERS):
        raise ConfigError(f"{path}: neither a run dir (it holds no samples.jsonl) nor a saved Hugging Face dataset")
    else:
        pairs = seed_pairs(str(source))
    if limit:
        pairs = Pairs(pairs.items[:limit], pairs.rows, pairs.skipped, pairs.why)
    if not pairs.items:
        raise ConfigError(f"{source} has no instruction-response pairs")
    return pairs


def score_source(
    source: str | Path,
    out: str | Path,
    config: ConfigLike | None = None,
    scorer: Scorer | None = None,
    limit: int | None = None,
    show_progress: bool = False,
) -> ScoreFile:
    """Score a run dir's samples (drafts too) or a seed source's pairs into `out`, one JSON line per pair: its id,
    instruction, the five statistics, and `draft_`-prefixed ones where the sample has a draft apart.

    Each line is appended as soon as its pair is scored; the pairs `out` holds already (scored by the same model and
    token limit) are not scored again, and its lines of no pair of this scoring are dropped (refed_dspy.scoring.rows).

    Args:
        source: a run dir, or anything [seeds] source takes.
        out: the JSONL file to write; its rows of this scoring are kept.
        config: [scoring] and [report] embedding_model describe the scorer (defaults when None).
        scorer: the scorer to use instead, as `open_scorer` gives one.
        limit: score the first `limit` pairs only.
        show_progress: print the estimate, the time left and a progress bar on stderr.

    Returns:
        What `out` holds: the pairs, the model, their mean figures, what was resumed or dropped.

    Raises:
        RunInterrupted: a stop (Ctrl-C, a signal), carrying the ScoreFile of what `out` holds then.
        ConfigError: no pairs to score, or `out` cannot be read or written (before any model loads).
    """
    found = pairs_of(source, limit)
    if scorer is None:
        config = given_config(config) or Config()
        scorer = open_scorer(config.scoring, config.report.embedding_model)
    start = time.perf_counter()
    names = [(p.id, p.instruction) for p in found.items]
    file = ScoreRows(out, names, scorer.label, scorer.settings.max_tokens)
    todo = [p for p in found.items if not file.has((p.id, p.instruction))]
    if show_progress and file.kept:
        print(f"resuming {out}: {file.kept} of {len(names)} pairs are scored there already", file=sys.stderr)

    def result(status: Literal["complete", "interrupted"], rows: list[dict[str, Any]]) -> ScoreFile:
        return ScoreFile(
            source=str(source),
            out=str(out),
            pairs=len(rows),
            **scorer.describe(),
            means=row_means(rows),
            seconds=round(time.perf_counter() - start, 1),
            rows=found.rows,
            skipped=found.skipped,
            skipped_why=found.why,
            asked=len(names),
            resumed=file.kept,
            dropped=file.dropped,
            status=status,
        )

    parts = [[(p.instruction, p.response)] + ([(p.instruction, p.draft)] if p.draft else []) for p in todo]
    try:
        for i, scores in scorer.score_parts(parts, show_progress=show_progress) if parts else ():
            file.append([score_row(todo[i], scores, scorer)])
    except KeyboardInterrupt:
        file.close()
        raise RunInterrupted(result("interrupted", list(file.rows.values()))) from None
    return result("complete", file.finish())


def score_row(pair: Pair, scores: Sequence[PairScore], scorer: Scorer) -> dict[str, Any]:
    """The line of `refed score` for `pair`, from its final response's statistics (and its draft's, second)."""
    row: dict[str, Any] = {"id": pair.id, "instruction": pair.instruction, **scores[0].figures()}
    if pair.draft:
        row |= scores[1].figures("draft_")
    return row | {"truncated": scores[0].truncated, "model": scorer.label, "max_tokens": scorer.settings.max_tokens}


def means(scores: Sequence[PairScore]) -> dict[str, float | None]:
    """The mean of each statistic (None where no pair has it), and the share of pairs at IFD >= 1."""
    return row_means([asdict(s) for s in scores])


def row_means(rows: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """`means` of rows holding the statistics by name (as `refed score` writes them; a figure not known is null)."""
    out: dict[str, float | None] = {}
    for name in STATS:
        values = [v for v in (r.get(name) for r in rows) if v is not None and math.isfinite(v)]
        out[name] = round(pystats.fmean(values), 4) if values else None
    at_least_1 = sum(r.get("ifd") is not None and r["ifd"] >= 1 for r in rows)
    out["ifd_at_least_1"] = round(at_least_1 / len(rows), 4) if rows else None
    return out


def statistics_block(
    rundir: RunDir, config: Config, scorer: Scorer, all_samples: bool = False, show_progress: bool = False
) -> dict[str, Any]:
    """The report's table: for the run's references, its drafts and its final responses, the pairs scored and the mean
    of each statistic; the model, the token limit, where coherence comes from, and which samples were scored."""
    samples = run_pairs(rundir)
    used = {s["meta"]["reference_id"] for s in read_jsonl(rundir.samples)}
    refs = [r for r in read_seeds(config.seeds)[0] if r.id in used]
    chosen = samples
    if not all_samples and len(samples) > config.scoring.report_pairs:
        chosen = random.Random(config.report.seed).sample(samples, config.scoring.report_pairs)
    drafted = [p for p in chosen if p.draft]
    groups = {
        "references": [(r.instruction, r.response) for r in refs],
        "drafts": [(p.instruction, p.draft or "") for p in drafted],
        "final responses": [(p.instruction, p.response) for p in chosen],
    }
    asked = [pair for pairs in groups.values() for pair in pairs]
    start = time.perf_counter()
    scores = iter(scorer.score(asked, show_progress=show_progress))
    rows = []
    for name, pairs in groups.items():
        got = [next(scores) for _ in pairs]
        rows.append(
            {"group": name, "pairs": len(pairs), **(means(got) if got else dict.fromkeys([*STATS, "ifd_at_least_1"]))}
        )
    return {
        **scorer.describe(),
        "rows": rows,
        "samples": len(samples),
        "samples_scored": len(chosen),
        "all_samples": len(chosen) == len(samples),
        "seed": config.report.seed,
        "seconds": round(time.perf_counter() - start, 1),
    }


def sample_note(block: dict[str, Any]) -> str:
    """Which samples the table holds, in words."""
    if block["all_samples"]:
        return f"every sample ({block['samples']})"
    return (
        f"{block['samples_scored']} of {block['samples']} samples, drawn with seed {block['seed']} "
        "(`--score-all` scores every one)"
    )


def statistics_lines(block: dict[str, Any]) -> list[str]:
    """The report's text lines: one per group, the model named."""
    if not block:
        return []
    lines = [f"  statistics   {block['model']}, {block['max_tokens']} tokens a text; {sample_note(block)}"]
    for row in block["rows"]:
        if not row["pairs"]:
            continue
        figures = ", ".join(f"{_short(k)} {_fmt(row[k])}" for k in STATS)
        lines.append(f"    {row['group']:<16} {row['pairs']:>4} pairs: {figures}")
    return lines


def _short(name: str) -> str:
    return {
        "instruction_ppl": "instruction ppl",
        "response_ppl": "response ppl",
        "response_ppl_given_instruction": "given instruction",
        "ifd": "IFD",
        "coherence": "coherence",
    }[name]


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def statistics_section(block: dict[str, Any]) -> dict[str, Any]:
    """What report.html's "Data statistics" section shows (quality/templates/report_statistics.html); an empty block
    (not scored): no section."""
    return {"block": block, "note": sample_note(block)} if block else {"block": {}}


def embedder_for(config: Config) -> Any:
    """The report's embedder for [report] embedding_model: a local sentence-embedding model folder (the scorer extra),
    else the model dspy.Embedder takes, uncached (DSPy's cache is the user's, keyed without the endpoint: an answer of
    one server would be read back for another)."""
    model = config.report.embedding_model
    if model and Path(model).expanduser().is_dir():
        return LocalEmbedder(model, config.scoring.device, ScoreCache(config.scoring.cache))
    return dspy.Embedder(model, caching=False)


def embedded(embedder: Any, texts: list[str], model: str) -> Any:
    """`embedder`'s embeddings of `texts`; a failure of a hosted model's request (a dspy.Embedder's) in one line:
    ConfigError when the server refused the key or knows no such model (401, 403, 404), else RunAborted. A key refused
    before it left, and an embedder of the caller's or a local one failing, are raised as they are."""
    if not isinstance(embedder, dspy.Embedder):
        return embedder(texts)
    try:
        with checking():  # a hosted model's request is checked where it takes the key it carries
            return embedder(texts)
    except Exception as err:
        if isinstance(err, RefedError) or refusal_in(err) is not None:
            raise
        status = getattr(err, "status_code", None)
        said = (str(err).strip().splitlines() or [""])[0][:300]
        line = f"report.embedding_model {model}: the embedding request failed ({type(err).__name__}: {said})"
        raise (ConfigError if status in (401, 403, 404) else RunAborted)(line) from None


def card_statistics(block: dict[str, Any]) -> dict[str, Any]:
    """What the dataset card's "Data statistics" section shows: the table of the report that found it (the model, the
    samples scored, a row per group with its figures as text); {} when the data was not scored."""
    if not block:
        return {}
    rows = [
        {"group": r["group"], "pairs": r["pairs"], **{k: _fmt(r.get(k)) for k in (*STATS, "ifd_at_least_1")}}
        for r in block["rows"]
        if r["pairs"]
    ]
    return {**block, "note": sample_note(block), "rows": rows}
