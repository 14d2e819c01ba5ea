"""`refed export RUN_DIR --format F --out PATH`: fine-tuning files, Hugging Face datasets, the hub, a dataset card."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from pydantic import Field

from refed_dspy.config import Config
from refed_dspy.errors import ConfigError, MissingKeyError, RunDirError
from refed_dspy.export.formats import CONVERTERS, FORMATS, RESPONSES, to_flat
from refed_dspy.quality.contamination import card_lines, contamination_of, public_params, unremoved_warning
from refed_dspy.results import Result
from refed_dspy.settings import tomllib
from refed_dspy.store.jsonl import read_json, read_jsonl, write_jsonl_atomic, write_text_atomic
from refed_dspy.store.outputs import check_output_dir
from refed_dspy.store.ownership import is_empty, owned
from refed_dspy.store.run_config import run_config
from refed_dspy.store.rundir import RunDir, incomplete_note
from refed_dspy.store.split import share_note, split_by_reference
from refed_dspy.store.teachers import count_teachers, teacher_label, teacher_rows
from refed_dspy.synthesis.program_origin import origin_text
from refed_dspy.tracking.mlflow_runs import mlflow_run

HF_TOKEN_ENV = "HF_TOKEN"
log = logging.getLogger(__name__)
CITATION = """@inproceedings{mehri2026reflevel,
  title     = {Beyond Sample-Level Feedback: Using Reference-Level Feedback to Guide Data Synthesis},
  author    = {Mehri, Shuhaib and others},
  booktitle = {Proceedings of the 19th Conference of the European Chapter of the Association for Computational Linguistics (EACL)},
  year      = {2026}
}"""


def provenance(rundir: RunDir) -> dict[str, Any]:
    """What the card says about where the data came from: the run's summary, config and filters applied."""
    filt = read_json(rundir.path / "filter_summary.json")
    origin = RunDir(filt["source_run"]) if filt.get("source_run") else rundir
    summary = read_json(origin.summary)
    seeds = None
    if origin.config.exists():
        try:
            seeds = tomllib.loads(origin.config.read_text()).get("seeds", {}).get("source")
        except (tomllib.TOMLDecodeError, OSError):
            seeds = None
    return {
        "summary": summary,
        "filters": filt.get("steps", []),
        "seeds": seeds or "refed-dspy embedded seed set",
        "judge": read_json(origin.judge_summary),
        "incomplete": incomplete_note(rundir.path),
    }


def dataset_card(
    splits: dict[str, list[dict]],
    fmt: str,
    which: str,
    system: str | None,
    prov: dict[str, Any],
    files: dict[str, str] | None = None,
) -> str:
    """README.md for the exported dataset (YAML header for the hub, then the facts)."""
    rows = [r for rows in splits.values() for r in rows]
    s = prov["summary"]
    metas = [r["meta"] for r in rows]
    methods = sorted({m.get("method", "?") for m in metas})
    teachers = teacher_rows(count_teachers(metas))
    if len(teachers) > 1:  # a run resumed onto another teacher: each with its samples
        teacher_cell = "; ".join(f"{teacher_label(t)} ({t['samples']} samples)" for t in teachers)
    else:  # one teacher: its model (a card is often published; a private endpoint has no place in it)
        teacher_cell = ", ".join(t["model"] for t in teachers)
    n = sum(len(v) for v in splits.values())
    size_cat = "n<1K" if n < 1000 else "1K<n<10K" if n < 10000 else "10K<n<100K" if n < 100000 else "100K<n<1M"
    header = [
        "---",
        "license: other",
        "language:",
        "- en",
        "task_categories:",
        "- text-generation",
        "tags:",
        "- synthetic",
        "- instruction-tuning",
        "- refed-dspy",
        f"size_categories:\n- {size_cat}",
    ]
    if files:
        header += ["configs:", "- config_name: default", "  data_files:"]
        header += [f"  - split: {name}\n    path: {path}" for name, path in files.items()]
    header.append("---")
    cost = s.get("cost_usd")
    filters = prov["filters"]
    judge = prov["judge"]
    lines = [
        "",
        "# Synthetic instruction-tuning data (refed-dspy)",
        "",
        f"Made with refed-dspy, method **{', '.join(methods)}** "
        "(Reference-Level Feedback, Mehri et al., EACL 2026, and its baselines).",
        "",
    ]
    if prov.get("incomplete"):
        lines += [f"> **Incomplete data:** the run behind this export {prov['incomplete'].removeprefix('it ')}.", ""]
    lines += [
        "| | |",
        "|---|---|",
        f"| method | {', '.join(methods)} |",
        f"| teacher | {teacher_cell} |",
        f"| seed references | {prov['seeds']} |",
        f"| samples | {n} ({', '.join(f'{k}: {len(v)}' for k, v in splits.items())}) |",
        f"| response exported | {which} |",
        f"| system prompt | {system!r} |" if system else "| system prompt | none |",
        f"| format | {fmt} |",
        *_program_rows(s),
        f"| synthesis cost | {'unknown' if cost is None else f'${cost:.2f}'} ({s.get('usage', {}).get('calls', '?')} LM calls) |",
    ]
    if judge.get("mean_score") is not None:
        lines.append(
            f"| judge | {judge.get('judge')}: mean score {judge['mean_score']}, improved beats draft "
            f"{judge.get('improvement_win_rate')} |"
        )
    lines += ["", "## Filters applied", ""]
    lines += [
        f"{st['step'] + 1}. `{st['filter']}` {json.dumps({k: v for k, v in public_params(st['params']).items() if k != 'name'})}: "
        f"{st['in']} in, {st['kept']} kept"
        for st in filters
    ] or ["None."]
    lines += [
        "",
        "The train/validation split keeps every sample of one reference on the same side.",
        "",
        *card_lines(prov.get("contamination") or {}),
        "## License",
        "",
        "These records were generated by the teacher model(s) above. Their use for training other models is "
        "governed by each model provider's terms; the seed references keep the license of their source. "
        "refed-dspy itself is Apache-2.0.",
        "",
        "## Citation",
        "",
        "```bibtex",
        CITATION,
        "```",
        "",
    ]
    return "\n".join(header + lines)


def _program_rows(summary: dict[str, Any]) -> list[str]:
    """The card's rows on the program that made the data: its name (an MLflow URI as it is; a file by its name, a
    local path having no place in a published card) and content hash, and the experiment and cell that made it."""
    program = summary.get("program")
    if not program:
        return []
    shown = (
        program
        if "://" in program or program.startswith(("models:/", "refed_dspy.", "python:"))
        else Path(program).name
    )
    rows = [f"| program | `{shown}` (hash `{summary.get('program_hash')}`) |"]
    origin = summary.get("program_origin")
    if origin:
        rows.append(f"| made by | {origin_text({**origin, 'experiment_dir': None})} |")
    return rows


# names that say "a file": --out is the directory that will hold train.*, validation.* and README.md
_FILE_SUFFIXES = {".jsonl", ".json", ".parquet", ".csv", ".txt", ".arrow", ".md", ".gz", ".zip"}


def check_out_is_dir(out: Path) -> None:
    """Refuse an --out that names a file (`--out data.jsonl` would make a directory called data.jsonl)."""
    if out.is_file():
        raise ConfigError(
            f"--out {out} is a file; --out is the directory that will hold train/validation files and README.md"
        )
    if not out.is_dir() and out.suffix.lower() in _FILE_SUFFIXES:
        raise ConfigError(
            f"--out {out} looks like a file name; --out is the directory that will hold train/validation "
            f"files and README.md (e.g. --out {out.with_suffix('')})"
        )


# what an export writes into --out, for any format: --overwrite removes these and nothing else
_OUR_FILES = (
    "README.md",
    "train.jsonl",
    "validation.jsonl",
    "train.parquet",
    "validation.parquet",
    "dataset_dict.json",
)
_OUR_DIRS = ("train", "validation")  # save_to_disk's split dirs


def _ours(out: Path) -> list[Path]:
    """The entries of `out` that an export wrote (split dirs only when they hold a saved dataset)."""
    found = [out / name for name in _OUR_FILES if (out / name).is_file()]
    found += [out / name for name in _OUR_DIRS if (out / name / "dataset_info.json").is_file()]
    return found


def _prepare_out(out: Path, overwrite: bool) -> None:
    taken = not is_empty(out) if out.is_dir() else out.exists()
    if taken:
        if not overwrite:
            raise RunDirError(f"{out} already exists; choose another --out or pass --overwrite")
        for path in _ours(out):  # an earlier export's files go; anything else in the dir stays
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunDirError(f"cannot create {out}: {err.strerror or err}") from None


def _write(
    out: Path | None, fmt: str, splits: dict[str, list[dict]], which: str, system: str | None, prov: dict[str, Any]
) -> tuple[Any, dict[str, str], str]:
    """Write the splits in `fmt` and the card into `out` (nothing for the hub without --out);
    returns (the DatasetDict when one was built, {split: file}, the card)."""
    dd, files = None, {}
    if fmt in CONVERTERS:
        for name, rows in splits.items():
            write_jsonl_atomic(out / f"{name}.jsonl", [CONVERTERS[fmt](s, which, system) for s in rows])
            files[name] = f"{name}.jsonl"
    elif fmt == "parquet":
        dd = _dataset_dict(splits, which, system)
        with _no_progress_bars():
            for name, ds in dd.items():
                ds.to_parquet(str(out / f"{name}.parquet"))
                files[name] = f"{name}.parquet"
    else:
        dd = _dataset_dict(splits, which, system)
        if out is not None:
            with _no_progress_bars():
                dd.save_to_disk(str(out))
    card = dataset_card(splits, fmt, which, system, prov, files or None)
    if out is not None:
        write_text_atomic(out / "README.md", card)
    return dd, files, card


@contextlib.contextmanager
def _no_progress_bars():
    """`datasets`' progress bars off for the block (an export of a few thousand rows takes a blink; its bars were the
    only thing on stderr), and back as they were after it. A user who set HF_DATASETS_DISABLE_PROGRESS_BARS=0 keeps
    them: `datasets` gives that variable priority and warns when it is overruled."""
    import datasets

    if not datasets.is_progress_bar_enabled() or datasets.config.HF_DATASETS_DISABLE_PROGRESS_BARS is False:
        yield
        return
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        datasets.enable_progress_bars()


def _dataset_dict(splits: dict[str, list[dict]], which: str, system: str | None):
    import datasets

    return datasets.DatasetDict(
        {
            name: datasets.Dataset.from_list([to_flat(s, which, system) for s in rows])
            for name, rows in splits.items()
            if rows
        }
    )


class ExportResult(Result):
    """What `refed export` wrote: the format, where, how many samples per split, the files."""

    format: str
    out: str | None = Field(description="The output directory (None: pushed to the hub only).")
    repo_id: str | None
    splits: dict[str, int]
    files: dict[str, str] = Field(description="Split (and card) -> the file written.")
    response: str = Field(description="Which response the records carry: improved or draft.")


def export_run(
    run_dir: str | Path,
    fmt: str,
    out: str | Path | None = None,
    *,
    which: str = "improved",
    system: str | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    repo_id: str | None = None,
    private: bool = True,
    overwrite: bool = False,
    config: Config | None = None,
) -> ExportResult:
    """Export a run dir's samples in `fmt` to `out` (or the hub), with a dataset card; `refed export` from Python.

    Args:
        run_dir: a run dir or a filtered dir.
        fmt: one of FORMATS: messages (OpenAI chat JSONL), sharegpt, alpaca, parquet, hf (a saved DatasetDict) or
            hub (pushed with the token in $HF_TOKEN).
        out: the output directory: new, empty, or an earlier export (`overwrite` replaces its files). Optional for
            hub.
        which: "improved" (the improved response, falling back to the draft) or "draft".
        system: a system prompt put at the start of each conversation.
        val_fraction: share of the references whose samples make the validation split (whole references, so the
            samples of one reference never straddle the split).
        seed: seed of that split.
        repo_id: OWNER/NAME on the Hub (hub only).
        private: hub only: push a private dataset (the default) or a public one.
        overwrite: replace an earlier export in `out`.
        config: the run's Config, for tracking; None: the run dir's own config.toml.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format '{fmt}'; available: {', '.join(FORMATS)}")
    if which not in RESPONSES:
        raise ConfigError(f"--response must be improved or draft, not '{which}'")
    if not 0 <= val_fraction < 1:
        raise ConfigError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    rundir = RunDir(run_dir)
    if not rundir.samples.exists():
        raise RunDirError(f"{rundir.path} has no samples.jsonl; nothing to export")
    token = None
    if fmt == "hub":
        if not repo_id:
            raise ConfigError("--format hub needs --repo-id OWNER/NAME")
        token = os.environ.get(HF_TOKEN_ENV)
        if not token:
            raise MissingKeyError(f"pushing to the hub needs a token in ${HF_TOKEN_ENV}")
    elif out is None:
        raise ConfigError(f"--format {fmt} needs --out DIR")
    if out is not None:
        check_out_is_dir(Path(out))
        check_output_dir(out, [run_dir])
    samples = list(read_jsonl(rundir.samples))
    if not samples:
        raise RunDirError(f"{rundir.samples} is empty; nothing to export")
    train, val = split_by_reference(samples, val_fraction, seed)
    splits = {"train": train, "validation": val} if val else {"train": train}
    prov = provenance(rundir)
    cfg = config if config is not None else (run_config(rundir) if rundir.config.exists() else Config())
    prov["contamination"] = contamination_of(rundir, samples, list(read_jsonl(rundir.rejects)), cfg)
    out_path = Path(out) if out is not None else None
    exporting = (
        owned(out, "export", "refed export", flag="--out", keep_lock=False)
        if out_path is not None
        else contextlib.nullcontext()
    )
    with exporting:
        if out_path is not None:
            _prepare_out(out_path, overwrite)
        dd, files, card = _write(out_path, fmt, splits, which, system, prov)
    # said once the export is made (an output dir refused first is the one line of that error)
    note = share_note(samples, val, val_fraction)
    if note:
        log.warning("warning: %s", note)
    if prov["incomplete"]:
        log.warning("warning: %s: %s; the dataset card says so", rundir.path, prov["incomplete"])
    if unremoved := unremoved_warning(prov["contamination"], str(run_dir)):
        log.warning("warning: %s", unremoved)
    if fmt == "hub":
        from huggingface_hub import DatasetCard

        dd.push_to_hub(repo_id, private=private, token=token)
        DatasetCard(card).push_to_hub(repo_id, token=token, repo_type="dataset")
    result = ExportResult(
        format=fmt,
        out=str(out_path) if out_path else None,
        repo_id=repo_id,
        splits={k: len(v) for k, v in splits.items()},
        files=files,
        response=which,
    )
    if cfg.tracking.enabled:
        log_export(cfg, rundir, splits, which, system, result)
    return result


def log_export(
    config: Config,
    rundir: RunDir,
    splits: dict[str, list[dict]],
    which: str,
    system: str | None,
    result: ExportResult,
) -> None:
    """Log each exported split to the run dir's MLflow run as an input dataset (mlflow.data)."""
    import mlflow
    import pandas as pd

    with mlflow_run(config, rundir.path):
        for name, rows in splits.items():
            if not rows:
                continue
            df = pd.DataFrame([{k: v for k, v in to_flat(s, which, system).items() if k != "messages"} for s in rows])
            source = result["out"] or f"hf://datasets/{result['repo_id']}"
            ds = mlflow.data.from_pandas(df, source=source, name=f"{rundir.path.name}-{name}")
            mlflow.log_input(ds, context=f"export/{name}")
