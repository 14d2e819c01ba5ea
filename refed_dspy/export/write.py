"""Writing an export's splits in its format, and its dataset card, into the output directory."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from refed_dspy.export.card import dataset_card
from refed_dspy.export.formats import CONVERTERS, to_flat
from refed_dspy.secrets import mask_value
from refed_dspy.store.jsonl import write_jsonl_atomic, write_text_atomic


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
