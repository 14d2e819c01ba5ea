"""A local sentence-embedding model (a transformers model folder: BERT-like, mean-pooled), for coherence and for the
report's embedding diversity when [report] embedding_model names a folder. Its vectors are cached with the passes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from refed_dspy.errors import ConfigError
from refed_dspy.scoring.cache import ScoreCache, pass_key
from refed_dspy.scoring.local import import_torch, quiet_loading

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
            with quiet_loading():
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
