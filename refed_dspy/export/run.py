"""`refed export RUN_DIR --format F --out PATH`: fine-tuning files, Hugging Face datasets, the hub, a dataset card.

Its --out directory is refused when it names a file or holds what an export did not write; emptied of an
earlier export's files on --overwrite.

The splits are written in the export's format, with its dataset card, into that directory: pure conversions of
sample records into fine-tuning shapes (`CONVERTERS`), and the grouped train/validation split.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from pydantic import Field

from refed_dspy.clients.destination import checking
from refed_dspy.config import Config
from refed_dspy.config.load import ConfigLike, given_config
from refed_dspy.errors import ConfigError, MissingKeyError, RunAborted, RunDirError
from refed_dspy.export.card import dataset_card, provenance
from refed_dspy.quality.contamination import contamination_of, unremoved_warning
from refed_dspy.secrets import mask_value
from refed_dspy.store.jsonl import read_jsonl, write_jsonl_atomic, write_text_atomic
from refed_dspy.store.ownership import check_output_dir, is_empty, owned
from refed_dspy.store.records import final_response
from refed_dspy.store.results import Result
from refed_dspy.store.rundir import RunDir, run_config
from refed_dspy.store.seeds import share_note, split_by_reference
from refed_dspy.tracking.mlflow_runs import failure_warned, mlflow_run

HF_TOKEN_ENV = "HF_TOKEN"
log = logging.getLogger(__name__)


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
    config: ConfigLike | None = None,
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

    Returns:
        The format, the output directory, the Hub repo, the samples per split, the files written and the response.

    Raises:
        ConfigError: an unknown format or response, a validation share outside [0, 1), a missing `out` or
            `repo_id`, an `out` that names a file, or a push the user must let through (HF_HUB_OFFLINE set, the
            token refused).
        MissingKeyError: hub with no token in $HF_TOKEN.
        RunAborted: the Hub or the network failed the push (the same call again pushes it).
        RunDirError: the run dir has no samples, or `out` is not a directory refed may write the export to.
    """
    _check_options(fmt, which, val_fraction)
    rundir = RunDir(run_dir)
    if not rundir.samples.exists():
        raise RunDirError(f"{rundir.path} has no samples.jsonl; nothing to export")
    token = _hub_token(fmt, repo_id, out)
    if out is not None:
        check_out_is_dir(Path(out))
        check_output_dir(out, [run_dir])
    samples = list(read_jsonl(rundir.samples))
    if not samples:
        raise RunDirError(f"{rundir.samples} is empty; nothing to export")
    train, val = split_by_reference(samples, val_fraction, seed)
    splits = {"train": train, "validation": val} if val else {"train": train}
    prov = provenance(rundir)
    cfg = given_config(config) or (run_config(rundir) if rundir.config.exists() else Config())
    prov["contamination"] = contamination_of(rundir, samples, list(read_jsonl(rundir.rejects)), cfg)
    out_path = Path(out) if out is not None else None
    dd, files, card = _write_owned(out_path, overwrite, fmt, splits, which, system, prov)
    # said once the export is made (an output dir refused first is the one line of that error)
    _warn(rundir, str(run_dir), samples, val, val_fraction, prov)
    if fmt == "hub":
        _push(dd, card, repo_id, private, token)
    result = ExportResult(
        format=fmt,
        out=str(out_path) if out_path else None,
        repo_id=repo_id,
        splits={k: len(v) for k, v in splits.items()},
        files=files,
        response=which,
    )
    if cfg.tracking.enabled:
        with failure_warned(out_path or rundir.path):
            log_export(cfg, rundir, splits, which, system, result)
    return result


def _check_options(fmt: str, which: str, val_fraction: float) -> None:
    """ConfigError for an unknown format or response, or a validation share outside [0, 1)."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format '{fmt}'; available: {', '.join(FORMATS)}")
    if which not in RESPONSES:
        raise ConfigError(f"--response must be improved or draft, not '{which}'")
    if not 0 <= val_fraction < 1:
        raise ConfigError(f"--val-fraction must be in [0, 1), got {val_fraction}")


def _hub_token(fmt: str, repo_id: str | None, out: str | Path | None) -> str | None:
    """The token in $HF_TOKEN for --format hub (which needs a repo id too); None for the other formats, which need
    an output directory."""
    if fmt != "hub":
        if out is None:
            raise ConfigError(f"--format {fmt} needs --out DIR")
        return None
    if not repo_id:
        raise ConfigError("--format hub needs --repo-id OWNER/NAME")
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise ConfigError(f"--repo-id {repo_id!r} is not a Hub repo id: {str(err).splitlines()[0]}") from None
    token = os.environ.get(HF_TOKEN_ENV)
    if not token:
        raise MissingKeyError(f"pushing to the hub needs a token in ${HF_TOKEN_ENV}")
    return token


def _write_owned(
    out: Path | None,
    overwrite: bool,
    fmt: str,
    splits: dict[str, list[dict]],
    which: str,
    system: str | None,
    prov: dict[str, Any],
) -> tuple[Any, dict[str, str], str]:
    """The export's files written into `out`, held (no other refed writes there meanwhile) and made ready first (an
    earlier export's files replaced with `overwrite`); with no `out` (the hub), only built. Returns what _write does."""
    exporting = (
        owned(out, "export", "refed export", flag="--out", keep_lock=False)
        if out is not None
        else contextlib.nullcontext()
    )
    with exporting:
        if out is not None:
            _prepare_out(out, overwrite)
        return _write(out, fmt, splits, which, system, prov)


def _warn(rundir: RunDir, shown: str, samples: list[dict], val: list[dict], val_fraction: float, prov: dict) -> None:
    """The warnings of a finished export: a split far from the share asked, incomplete data, contamination left in
    (the run dir named `shown`, as it was given)."""
    note = share_note(samples, val, val_fraction)
    if note:
        log.warning("warning: %s", note)
    if prov["incomplete"]:
        log.warning("warning: %s: %s; the dataset card says so", rundir.path, prov["incomplete"])
    if unremoved := unremoved_warning(prov["contamination"], shown):
        log.warning("warning: %s", unremoved)


def _push(dd: Any, card: str, repo_id: str, private: bool, token: str) -> None:
    """The dataset and its card pushed to the hub as `repo_id`; a push the Hub or the network refuses is one line:
    ConfigError where the cause is the user's (offline mode, the token refused), RunAborted otherwise."""
    from huggingface_hub import DatasetCard
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    try:
        with checking():  # the Hub's requests carry $HF_TOKEN: each checked where it goes
            dd.push_to_hub(repo_id, private=private, token=token)
            DatasetCard(card).push_to_hub(repo_id, token=token, repo_type="dataset")
    except OfflineModeIsEnabled:
        raise ConfigError(f"cannot push {repo_id}: HF_HUB_OFFLINE is set; unset it to reach the Hub") from None
    except (HfHubHTTPError, ConnectionError, *_transport_errors()) as err:
        first = (str(err).splitlines() or [type(err).__name__])[0]
        status = getattr(getattr(err, "response", None), "status_code", None)
        if status in (401, 403):
            raise ConfigError(f"the Hub refused ${HF_TOKEN_ENV} for {repo_id}: {first}") from None
        raise RunAborted(
            f"pushing {repo_id} to the Hub failed: {first}; run the same command again to push it"
        ) from None


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The network errors of the HTTP client huggingface_hub sends with (httpx2 from its 2.0, httpx before; requests'
    are ConnectionErrors), of those installed."""
    found = []
    for name in ("httpx2", "httpx"):
        with contextlib.suppress(ImportError):
            found.append(importlib.import_module(name).TransportError)
    return tuple(found)


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
            raise RunDirError(f"{out} already exists; choose another --out (out=) or pass --overwrite (overwrite=True)")
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

    return datasets.DatasetDict(  # masked as every file written is (refed_dspy.store.jsonl masks the others)
        {
            name: datasets.Dataset.from_list([mask_value(to_flat(s, which, system)) for s in rows])
            for name, rows in splits.items()
            if rows
        }
    )


FORMATS = ("messages", "sharegpt", "alpaca", "parquet", "hf", "hub")
RESPONSES = ("improved", "draft")


def chosen_response(sample: dict[str, Any], which: str = "improved") -> str:
    """The response to export: 'improved' (falling back to the draft when a method has no improvement) or 'draft'."""
    if which == "draft":
        return (sample.get("response") or "").strip()
    return final_response(sample)


def to_messages(sample: dict[str, Any], which: str = "improved", system: str | None = None) -> dict[str, Any]:
    """OpenAI chat fine-tuning row: {"messages": [system?, user, assistant]}."""
    msgs = [{"role": "system", "content": system}] if system else []
    msgs += [
        {"role": "user", "content": sample["instruction"]},
        {"role": "assistant", "content": chosen_response(sample, which)},
    ]
    return {"messages": msgs}


def to_sharegpt(sample: dict[str, Any], which: str = "improved", system: str | None = None) -> dict[str, Any]:
    """ShareGPT row: {"conversations": [{"from": "system"?|"human"|"gpt", "value": ...}]}."""
    conv = [{"from": "system", "value": system}] if system else []
    conv += [
        {"from": "human", "value": sample["instruction"]},
        {"from": "gpt", "value": chosen_response(sample, which)},
    ]
    return {"conversations": conv}


def to_alpaca(sample: dict[str, Any], which: str = "improved", system: str | None = None) -> dict[str, Any]:
    """Alpaca row: {"instruction", "input", "output"} (+ "system" when given)."""
    row = {"instruction": sample["instruction"], "input": "", "output": chosen_response(sample, which)}
    if system:
        row["system"] = system
    return row


def to_flat(sample: dict[str, Any], which: str = "improved", system: str | None = None) -> dict[str, Any]:
    """The full row for Hugging Face datasets and Parquet: chat messages plus provenance columns."""
    meta = sample["meta"]
    return {
        "id": meta["id"],
        "instruction": sample["instruction"],
        "response": chosen_response(sample, which),
        "draft_response": sample.get("response"),
        "improved_response": sample.get("improved_response"),
        "messages": to_messages(sample, which, system)["messages"],
        "reference_id": meta.get("reference_id"),
        "feature": meta.get("feature"),
        "method": meta.get("method"),
        "teacher": meta.get("teacher"),
    }


CONVERTERS = {"messages": to_messages, "sharegpt": to_sharegpt, "alpaca": to_alpaca}
