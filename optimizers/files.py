"""The files an optimization writes beside program.json: instructions.txt, before_after.md (a few validation examples,
before and after) and config.toml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from refed_dspy.config import Config, to_toml
from refed_dspy.programs.saved import instructions_text
from refed_dspy.store.jsonl import write_text_atomic
from refed_dspy.store.records import Reference, final_response


def _example_text(ex: Any) -> str:
    if ex.get("instruction"):
        return f"**Instruction:** {ex.instruction}"
    return f"**Reference:** {Reference.coerce(ex.reference).instruction}"


def prediction_text(pred: Any) -> str:
    """What a prediction of any target produced, as text: the final response; the proposed instructions; or the
    first samples of a pipeline."""
    if pred is None:
        return ""
    if pred.get("instructions") is not None:
        return "\n".join(f"- ({feature}) {text}" for feature, text in pred.instructions) or "(no instruction)"
    if pred.get("samples") is not None:
        return "\n\n".join(f"{s.instruction}\n-> {final_response(s)}" for s in pred.samples[:3]) or "(no sample)"
    return final_response(pred)


def before_after_markdown(before_rows: list, after_rows: list, k: int) -> str:
    """The first `k` validation examples: their input, what the program made and its score, before and after."""

    def cut(text: str, n: int = 800) -> str:
        return text if len(text) <= n else text[:n] + " [...]"

    def quoted(pred: Any) -> str:
        return cut(prediction_text(pred)).replace("\n", "\n> ")

    parts = ["# Before and after optimization (validation examples)\n"]
    for i, ((ex, p0, s0), (_, p1, s1)) in enumerate(zip(before_rows[:k], after_rows[:k], strict=False), 1):
        parts.append(
            f"## Example {i}\n\n{cut(_example_text(ex), 420)}\n\n"
            f"**Before** (score {s0:.3f}):\n\n> {quoted(p0)}\n\n"
            f"**After** (score {s1:.3f}):\n\n> {quoted(p1)}\n"
        )
    return "\n".join(parts)


def write_outputs(out: Path, config: Config, result: dict[str, Any], program_path: Path, shown: int) -> list[Path]:
    """instructions.txt, before_after.md (`shown` validation examples) and config.toml (the config of record) beside
    program.json; returns the four paths."""

    files = [program_path, out / "instructions.txt", out / "before_after.md", out / "config.toml"]
    write_text_atomic(files[1], instructions_text(result["program"]))
    write_text_atomic(
        files[2],
        before_after_markdown(result["before_rows"], result["after_rows"], shown),
    )
    write_text_atomic(files[3], to_toml(config))
    return files
