"""An export's --out directory: refused when it names a file or holds what an export did not write; emptied of an
earlier export's files on --overwrite."""

from __future__ import annotations

import shutil
from pathlib import Path

from refed_dspy.errors import ConfigError, RunDirError
from refed_dspy.store.ownership import is_empty

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
