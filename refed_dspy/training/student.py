"""The student: a causal LM of `transformers` loaded for fine-tuning or for answering, and how a pair is laid out in its
chat template.

A pair is the template's turns around the instruction and the response: the tokens up to the assistant's turn are the
prompt (no loss on them), the response and the template's end of turn are what the student learns. The same prompt is
what the student is given to answer, so it is asked as it was taught. Texts are cut at
`[train] max_prompt_tokens` and `max_response_tokens` tokens each, never the template around them.

A GGUF (the packaged SmolLM2, or a `.gguf` file) is unpacked into a plain model once, which takes 20 s for 135M
parameters on 2 cores, and that plain copy is kept in `$XDG_CACHE_HOME/refed-dspy/students/` (by the file's path, size
and time, and the dtype): every later training or evaluation of it loads in a second.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refed_dspy.clients.destination import checking
from refed_dspy.errors import ConfigError
from refed_dspy.scoring.cache import default_path
from refed_dspy.scoring.local import import_torch, quiet_loading, resolve

IGNORE = -100  # the label of a token no loss is taken on (torch's cross-entropy default)
WHOLE = ".complete"  # written last into a plain copy of a GGUF's model: a copy without it is not used
_X, _Y = "\x01REFED-INSTRUCTION\x01", "\x01REFED-RESPONSE\x01"


@dataclass(frozen=True)
class Layout:
    """The template's text around a turn pair: before the instruction, between it and the response, after the
    response (the end of the assistant's turn)."""

    before: str
    between: str
    after: str


def layout_of(tokenizer: Any) -> Layout:
    """The chat template's turns around an instruction and a response (a plain layout for a model without one)."""
    if getattr(tokenizer, "chat_template", None):
        try:
            both = tokenizer.apply_chat_template(
                [{"role": "user", "content": _X}, {"role": "assistant", "content": _Y}], tokenize=False
            )
            before, rest = both.split(_X, 1)
            between, after = rest.split(_Y, 1)
            return Layout(before, between, after)
        except Exception:  # noqa: BLE001 - a template that refuses these turns: the plain layout
            pass
    return Layout(tokenizer.bos_token or "", "\n\n", tokenizer.eos_token or "")


@dataclass(frozen=True)
class Example:
    """One pair as the student trains on it: token ids, and labels (IGNORE on the prompt)."""

    input_ids: list[int]
    labels: list[int]


class Student:
    """A model and its tokenizer, loaded once (`load`), from what `[train] student` names.

    Args:
        name: `smollm2`, a Hugging Face id, a model folder or a .gguf file.
        device: a torch device; None: cuda when torch sees one, else cpu.
        dtype: float32, bfloat16, float16, or auto (bfloat16 on a GPU that computes in it, else float32).
        what: how messages name it (`[train] student`).

    Raises:
        ConfigError: the device is not one torch has here, or a GGUF file named is not there.
    """

    def __init__(self, name: str, device: str | None = None, dtype: str = "auto", what: str = "[train] student"):
        self.torch, self.transformers = import_torch()
        self.name, self.what = name, what
        try:
            self.source, self.gguf, self.label = resolve(name)
        except ConfigError:
            raise ConfigError(f"{what} {name!r}: no such GGUF file") from None
        self.device = usable_device(self.torch, device)
        self.dtype = Student.dtype_for(self.device, dtype)
        self.model: Any = None
        self.tokenizer: Any = None

    @staticmethod
    def dtype_for(device: str | None, dtype: str) -> str:
        """The dtype a student is loaded in: `dtype`, or for auto bfloat16 on a GPU that computes in it, else float32."""
        if dtype != "auto":
            return dtype
        torch, _ = import_torch()
        cuda = (device or "cuda").startswith("cuda") and torch.cuda.is_available()
        return "bfloat16" if cuda and torch.cuda.is_bf16_supported() else "float32"

    def load(self) -> Student:
        """Load the tokenizer and the model (once). Raises ConfigError, one line, when they cannot be loaded."""
        if self.model is not None:
            return self
        kept = dense_folder(Path(self.source) / self.gguf, self.dtype) if self.gguf else None
        try:
            with quiet_loading(), checking():  # a Hub download carries $HF_TOKEN: checked where it goes
                if kept is not None and (kept / WHOLE).exists():
                    self._load(str(kept), {})
                else:
                    self._load(self.source, {"gguf_file": self.gguf} if self.gguf else {})
                    if kept is not None:
                        keep_dense(self.model, self.tokenizer, kept, Path(self.source) / self.gguf)
        except (OSError, ValueError, KeyError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(f"{self.what} {self.name!r} cannot be loaded: {first[:300]}") from None
        self.layout = layout_of(self.tokenizer)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        return self

    def _load(self, source: str, kwargs: dict[str, Any]) -> None:
        auto = self.transformers
        # a GGUF's weights unpacked into a plain dense model: one transformers trains (packed blocks it refuses to)
        dense = {"quantization_config": auto.GgufConfig(dequantize=True)} if kwargs else {}
        self.tokenizer = auto.AutoTokenizer.from_pretrained(source, **kwargs)
        self.model = auto.AutoModelForCausalLM.from_pretrained(
            source, dtype=getattr(self.torch, self.dtype), **kwargs, **dense
        )

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def prompt(self, instruction: str, max_tokens: int) -> list[int]:
        """The token ids the student is given for `instruction` (cut at `max_tokens`), up to its answer's first."""
        lay = self.layout
        return self.encode(lay.before) + self.encode(instruction)[:max_tokens] + self.encode(lay.between)

    def example(self, instruction: str, response: str, max_prompt: int, max_response: int) -> Example:
        """A pair laid out for training: the loss is taken on the response and the end of its turn only."""
        prompt = self.prompt(instruction, max_prompt)
        answer = self.encode(response)[:max_response] + self.encode(self.layout.after)
        return Example(prompt + answer, [IGNORE] * len(prompt) + answer)

    def stops(self) -> list[int]:
        """The token ids that end an answer: the end of sequence, and the token that opens the template's end of turn."""
        ids = {self.tokenizer.eos_token_id}
        after = self.encode(self.layout.after.strip()) if self.layout.after.strip() else []
        if after and after[0] in self.tokenizer.all_special_ids:
            ids.add(after[0])
        return sorted(i for i in ids if i is not None)

    def answer(self, model: Any, instructions: list[str], max_prompt: int, max_new: int) -> list[str]:
        """Greedy answers of `model` (this student's weights, with an adapter or not) to `instructions`, as one batch
        padded on the left."""
        torch, pad = self.torch, self.tokenizer.pad_token_id
        rows = [self.prompt(text, max_prompt) for text in instructions]
        width = max(len(r) for r in rows)
        device = next(model.parameters()).device
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
        with torch.no_grad():
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=max_new,
                do_sample=False,
                pad_token_id=pad,
                eos_token_id=self.stops(),
            )
        return [self.tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in out]


def usable_device(torch: Any, device: str | None) -> str:
    """`device` (cpu, cuda, cuda:N, mps) when torch has it here, made the current one for a numbered GPU; None: cuda
    when torch sees one, else cpu. ConfigError naming what is there otherwise."""
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    kind, _, number = device.partition(":")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if kind == "cuda" and (not count or (number and (not number.isdigit() or int(number) >= count))):
        raise ConfigError(f"device {device!r}: torch sees {count} CUDA device(s) here; set device to cpu or unset it")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {device!r}: torch has no MPS here; set device to cpu or unset it")
    if kind not in ("cpu", "cuda", "mps") or (kind != "cuda" and number):
        raise ConfigError(f"device {device!r}: expected cpu, cuda, cuda:N or mps")
    if kind == "cuda" and number:
        torch.cuda.set_device(int(number))  # the Trainer and a plain `cuda` take the current device
    return device


def dense_folder(gguf: Path, dtype: str) -> Path:
    """Where the plain copy of a GGUF's model in `dtype` is kept (by the file's path, size and modification time)."""
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return default_path().parent / "students" / f"{gguf.stem}-{key}-{dtype}"


def _source(gguf: Path) -> dict[str, Any]:
    stat = gguf.stat()
    return {"gguf": str(gguf.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def keep_dense(model: Any, tokenizer: Any, folder: Path, gguf: Path) -> None:
    """Save the plain model and its tokenizer to `folder`, whole or not at all (written aside, then renamed; a full
    disk, or another process that kept it first, leaves things as they were); then remove the copies beside it whose
    GGUF is gone or changed (a package installed again: a copy a model's size each)."""
    aside = folder.with_name(f"{folder.name}.{os.getpid()}.tmp")
    try:
        model.save_pretrained(str(aside))
        tokenizer.save_pretrained(str(aside))
        (aside / WHOLE).write_text(json.dumps(_source(gguf)))
        os.rename(aside, folder)
    except OSError:
        pass
    finally:
        shutil.rmtree(aside, ignore_errors=True)
    with contextlib.suppress(OSError):  # a cache that cannot be listed keeps what it holds
        for other in folder.parent.iterdir():
            if other.is_dir() and not other.name.endswith(".tmp") and _stale(other):
                shutil.rmtree(other, ignore_errors=True)


def _stale(copy: Path) -> bool:
    """Whether a kept copy's GGUF is gone or changed since; a copy that does not say which GGUF it is of, or whose
    GGUF cannot be read now (a drive not mounted), is kept."""
    try:
        source = json.loads((copy / WHOLE).read_text())
        return _source(Path(source["gguf"])) != source
    except FileNotFoundError:
        return (copy / WHOLE).is_file()  # its GGUF gone (the copy itself whole)
    except (OSError, ValueError, TypeError, KeyError):
        return False
