"""The values of the keys this process holds, and their mask in any text we print or write.

A key reaches a message without our putting it there: a gateway that quotes the request's `Authorization` header in
its error body, a client's exception that repeats its settings. So the text itself is masked where it leaves the
process, at a few chokepoints every message passes: the CLI's stdout and stderr (`masked_streams`), the files of a
run dir (refed_dspy.store.jsonl), the log file of other libraries' output (refed_dspy.quiet), what MLflow is given
(refed_dspy.tracking), the viewer's pages, and the one line an error is reported by (refed_dspy.errors.first_line).

Held keys: the value of every environment variable whose name says it holds a credential (`is_credential_name`:
`..._KEY`, `..._TOKEN`, `..._SECRET`, `..._PASSWORD`, ...) and that is long enough to be one (MIN_SECRET_LEN) and not
the path of a file (GOOGLE_APPLICATION_CREDENTIALS names one), and every key an LM was built with or handed in
(`hold`: a variable of any name, an inline `api_key`).
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, TextIO

__all__ = ["MIN_SECRET_LEN", "MaskedStream", "hold", "is_credential_name", "mask", "masked_streams"]

# a value this short is a placeholder ("unused", "EMPTY", "none") or a setting, not a secret: masking it would mangle
# ordinary text
MIN_SECRET_LEN = 12
_CREDENTIAL_SUFFIXES = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "PASSPHRASE", "CREDENTIAL", "CREDENTIALS")
_RESCAN_S = 1.0  # the environment is read again at most this often (and whenever its size changes)

_lock = threading.Lock()
_held: set[str] = set()  # values handed to `hold`
_env: tuple[int, float, frozenset[str]] = (-1, 0.0, frozenset())  # (size of os.environ, when read, the values)
_forms: dict[str, tuple[str, ...]] = {}  # value -> the spellings of it a text may carry (as is, in JSON, in HTML)
_ordered: tuple[str, ...] = ()  # every held value, longest first (a key that holds another is masked whole)
_ordered_of: frozenset[str] = frozenset()


def is_credential_name(name: str) -> bool:
    """Whether an environment variable's name says it holds a credential (OPENAI_API_KEY, HF_TOKEN, MY_VLLM_KEY,
    AWS_SECRET_ACCESS_KEY, MLFLOW_TRACKING_PASSWORD)."""
    return name.upper().endswith(_CREDENTIAL_SUFFIXES)


def hold(value: Any) -> None:
    """Mask `value` from now on in every text that passes `mask` (a key read from a variable of any name, an LM's
    inline api_key). A value shorter than MIN_SECRET_LEN, or not a string, is ignored."""
    if isinstance(value, str) and len(value) >= MIN_SECRET_LEN and value not in _held:
        with _lock:
            _held.add(value)


def _env_values() -> frozenset[str]:
    global _env
    size, read_at, values = _env
    now = time.monotonic()
    if size == len(os.environ) and now - read_at < _RESCAN_S:
        return values
    found = frozenset(
        v
        for k, v in list(os.environ.items())
        if len(v) >= MIN_SECRET_LEN and is_credential_name(k) and v.strip() and not os.path.exists(v)
    )
    _env = (len(os.environ), now, found)
    return found


def _values() -> tuple[str, ...]:
    """Every held value, longest first."""
    global _ordered, _ordered_of
    every = _env_values() | _held
    if every != _ordered_of:
        with _lock:
            _ordered = tuple(sorted(every, key=len, reverse=True))
            _ordered_of = frozenset(every)
    return _ordered


def _spellings(value: str) -> tuple[str, ...]:
    forms = _forms.get(value)
    if forms is None:
        forms = tuple(dict.fromkeys((value, json.dumps(value)[1:-1], html.escape(value), html.escape(value, False))))
        _forms[value] = forms
    return forms


def masked(value: str) -> str:
    """What a held value is replaced by: its first 3 and last 4 characters for a long key (`sk-...1a2b`, which tells
    keys apart), `***` for a short one."""
    return f"{value[:3]}...{value[-4:]}" if len(value) >= 24 else "***"


def mask(text: str) -> str:
    """`text` with every held key's value (as is, JSON-escaped or HTML-escaped) replaced by its mask."""
    if not text:
        return text
    for value in _values():
        for form in _spellings(value):
            if form in text:
                text = text.replace(form, masked(value))
    return text


class MaskedStream:
    """A text stream that masks what is written through it and passes everything else to the stream it wraps."""

    def __init__(self, stream: TextIO):
        self._stream = stream

    @property
    def wrapped(self) -> TextIO:
        return self._stream

    def write(self, text: str) -> int:
        self._stream.write(mask(text))
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def masked_streams() -> Iterator[None]:
    """Within the block, sys.stdout and sys.stderr mask every held key (a stream already masked is left as it is);
    after it, each is restored unless someone replaced it meanwhile."""
    out, err = sys.stdout, sys.stderr
    new_out = out if isinstance(out, MaskedStream) else MaskedStream(out)
    new_err = err if isinstance(err, MaskedStream) else MaskedStream(err)
    sys.stdout, sys.stderr = new_out, new_err
    try:
        yield
    finally:
        if sys.stdout is new_out:
            sys.stdout = out
        if sys.stderr is new_err:
            sys.stderr = err
