"""The values of the keys this process holds, where each came from, and their mask in any text we print or write.

A key reaches a message without our putting it there: a gateway that quotes the request's `Authorization` header in
its answer or its error body, a client's exception that repeats its settings. So the text itself is masked where it
leaves the process, at the few chokepoints every byte passes: the CLI's stdout and stderr (`masked_streams`), the
files we write (refed_dspy.store.jsonl's writers; the run's cache, refed_dspy.store.cache, stores each answer
masked, `mask_value`), the log file of other libraries' output (refed_dspy.runtime.quiet), what MLflow is given
(refed_dspy.tracking), the viewer's pages, and the one line an error is reported by (`first_line`).

Held values (`is_secret_value`: at least MIN_SECRET_LEN characters, not a placeholder a local server takes such as
`EMPTY` or `unused`, not the path of a file): the value of every environment variable whose name says it holds a
credential (`is_credential_name`: `..._KEY`, `..._TOKEN`, `..._SECRET`, `..._PASSWORD`, ...), the tokens in the
OpenTelemetry exporters' header variables, a password in MLflow's tracking URI or in an endpoint variable of LM
clients (`..._BASE_URL`, `..._API_BASE`, `..._ENDPOINT`: a run records where its calls went), and every key an LM was
built with or handed in (`hold`). A value is masked wherever it stands as a whole token (not inside a longer word: a
six-character key must not mangle ordinary text); one of PIECE_LEN characters or more wherever it stands, and so is
any run of PIECE_LEN or more of its characters, whatever surrounds it (a gateway that quotes a prefix of the key, or
the key broken by a newline: each piece that long is masked).

Where a value came from (`sources_of`: the variables holding it) is what the HTTP layer's key check reads to know
whose key a request carries (refed_dspy.clients.destination).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import copy
import html
import json
import os
import re
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import quote_plus, unquote, urlsplit

__all__ = [
    "MIN_SECRET_LEN",
    "MaskedStream",
    "find_held",
    "hold",
    "is_credential_name",
    "is_secret_value",
    "mask",
    "mask_value",
    "masked_streams",
    "sources_of",
]

# a value this short is a setting, not a secret: masking it would mangle ordinary text
MIN_SECRET_LEN = 6
# a run this long of a held value is masked wherever it stands (no ordinary text holds 12 characters of a random key
# in a row); a value this long is masked inside a longer word too
PIECE_LEN = 12
_RUN = b"\x01" * PIECE_LEN  # PIECE_LEN bytes in a row that held values are made of (`_Matcher.marks`)
# what local servers take as a key that checks nothing (vLLM's, llama.cpp's, Ollama's and LM Studio's docs, LiteLLM's
# proxy examples, refed's own `unused`): not secrets, and masking them would mangle text
PLACEHOLDERS = frozenset(
    {
        "x",
        "empty",
        "none",
        "null",
        "unused",
        "dummy",
        "placeholder",
        "no-key",
        "nokey",
        "not-needed",
        "not-used",
        "sk-no-key-required",
        "ollama",
        "lm-studio",
        "llama.cpp",
        "changeme",
        "secret",
        "token",
        "api-key",
        "apikey",
    }
)
_CREDENTIAL_SUFFIXES = (
    "KEY",
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "PASSPHRASE",
    "CREDENTIAL",
    "CREDENTIALS",
    "JWT",
)
# variables that hold secrets inside a longer value: OpenTelemetry's exporter headers (`k=v,k2=v2`, URL-encoded)
_HEADER_VARIABLES = re.compile(r"^OTEL_EXPORTER_OTLP(_[A-Z]+)?_HEADERS$")
# variables that name a URL whose userinfo may hold a password: MLflow's tracking server, and the endpoints the
# environment gives LM clients (OPENAI_BASE_URL, OPENAI_API_BASE, AZURE_OPENAI_ENDPOINT and kin), which a run
# records as where its calls went
_URL_VARIABLES = re.compile(r"^(MLFLOW_TRACKING_URI|MLFLOW_REGISTRY_URI|\w+_BASE_URL|\w+_API_BASE|\w+_ENDPOINT)$")
_TOKEN_CHARS = r"A-Za-z0-9_\-"  # what a key is made of: a held value next to one of these is part of another word

_lock = threading.Lock()
_held: dict[str, set[str]] = {}  # values handed to `hold` -> the variables they were read from (none: inline)
_env: tuple[tuple[Any, ...], dict[str, frozenset[str]]] = ((), {})  # (the environment read, value -> names)


@dataclass(frozen=True)
class _Matcher:
    """What finds the held values in a text, made again when they change: the pattern of their spellings (the longest
    first, so a key that holds another is masked whole), each spelling's mask and the value it spells; for pieces, a
    byte table that marks the ASCII characters long values are made of (so that a text with no PIECE_LEN of them in a
    row is passed over at the speed of bytes.translate; a value's characters outside ASCII, which no API key has, end a
    run) and every run of PIECE_LEN characters of each long spelling (a gram -> the spelling and its offset there)."""

    values: frozenset[str] = frozenset()
    whole: re.Pattern[str] | None = None
    masks: dict[str, str] = field(default_factory=dict)
    spelled: dict[str, str] = field(default_factory=dict)
    marks: bytes = b""
    grams: dict[str, tuple[str, int]] = field(default_factory=dict)
    in_bodies: dict[bytes, str] = field(default_factory=dict)  # each spelling a request body may carry -> its value


_matcher = _Matcher()


def is_credential_name(name: str) -> bool:
    """Whether an environment variable's name says it holds a credential (OPENAI_API_KEY, HF_TOKEN, MY_VLLM_KEY,
    AWS_SECRET_ACCESS_KEY, MLFLOW_TRACKING_PASSWORD, SNOWFLAKE_JWT, AWS_BEARER_TOKEN_BEDROCK)."""
    upper = name.upper()
    return upper.endswith(_CREDENTIAL_SUFFIXES) or "_BEARER_" in f"_{upper}_"


def is_secret_value(value: Any) -> bool:
    """Whether `value` can be a secret: a string of at least MIN_SECRET_LEN characters that is not a placeholder a
    server without keys takes (`EMPTY`, `unused`), not blank and not the path of a file (GOOGLE_APPLICATION_CREDENTIALS
    names one)."""
    if not isinstance(value, str) or len(value.strip()) < MIN_SECRET_LEN:
        return False
    return value.strip().lower() not in PLACEHOLDERS and not os.path.exists(value)


def hold(value: Any, source: str | None = None) -> None:
    """Mask `value` from now on in every text that passes `mask` (a key read from a variable of any name, an LM's
    inline api_key); `source` names the variable it was read from. A value that cannot be a secret is ignored."""
    if not is_secret_value(value):
        return
    with _lock:
        for one in {value, value.strip()}:  # as read, and as a client that strips it sends it
            names = _held.setdefault(one, set())
            if source:
                names.add(source)


def _header_secrets(text: str) -> Iterator[str]:
    """The values of an OpenTelemetry headers variable (`Authorization=Bearer%20abc,api-key=xyz`), and the token after
    a scheme word (`Bearer abc`: abc)."""
    for item in text.split(","):
        _, _, value = item.partition("=")
        value = unquote(value).strip()
        yield value
        scheme, _, token = value.partition(" ")
        if token and scheme.isalpha():
            yield token.strip()


def _environment() -> tuple[Any, ...]:
    """The environment as it is now, cheaply (os.environ's own store, undecoded, where CPython keeps one): compared at
    each call, so a key set a moment ago is masked from then on."""
    raw = getattr(os.environ, "_data", None)
    return tuple(raw.items()) if isinstance(raw, dict) else tuple(os.environ.items())


def _env_found() -> dict[str, frozenset[str]]:
    """value -> the names of the variables holding it, for every secret the environment holds."""
    global _env
    now = _environment()
    if now == _env[0]:
        return _env[1]
    names: dict[str, set[str]] = {}
    for name, value in list(os.environ.items()):
        if not (
            is_credential_name(name) or _HEADER_VARIABLES.match(name.upper()) or _URL_VARIABLES.match(name.upper())
        ):
            continue
        if is_credential_name(name):
            candidates: Iterable[str] = (value, value.strip())  # huggingface_hub and LiteLLM strip some keys they send
        elif _HEADER_VARIABLES.match(name.upper()):
            candidates = _header_secrets(value)
        else:
            candidates = _url_secrets(value)
        for one in candidates:
            if is_secret_value(one):
                names.setdefault(one, set()).add(name)
    stored = _hub_token()
    if is_secret_value(stored):
        names.setdefault(stored, set()).add(HUB_TOKEN_FILE)
    found = {value: frozenset(n) for value, n in names.items()}
    _env = (now, found)
    return found


HUB_TOKEN_FILE = "the Hugging Face token file"  # where `hf auth login` stores the token huggingface_hub sends


def _hub_token() -> str:
    """The token huggingface_hub reads from its token file when HF_TOKEN is unset ('' when there is none)."""
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface"
    )
    try:
        with open(os.environ.get("HF_TOKEN_PATH") or os.path.join(home, "token"), encoding="utf-8") as file:
            return file.read(4096).strip()
    except (OSError, UnicodeDecodeError):
        return ""


def _url_secrets(url: str) -> tuple[str, ...]:
    """The password of `url` and the values of its query parameters that name a credential (`?api-key=...`)."""
    try:
        password = unquote(urlsplit(url).password or "")
    except ValueError:
        password = ""
    return (password, *(value for _, value in query_credentials(url)))


# the words of a query parameter's name that say it carries a credential (a gateway's `?api-key=`, Gemini's `?key=`,
# Azure Functions' `?code=`, a signed URL's `sig`): a word that is one of the first, or ends in one of the second
# (`accesstoken`, `secretkey`), so that `max_tokens`, `keyword` and `author` are not
_QUERY_WORDS = frozenset(("sig", "auth", "authorization", "code"))
_QUERY_ENDINGS = (
    "key",
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "signature",
    "credential",
    "credentials",
    "jwt",
)


def query_credentials(url: str) -> list[tuple[str, str]]:
    """(name, value) of each query parameter of `url` whose name has a word that says it carries a credential and
    whose value can be a secret (`is_secret_value`: `?auth=none` is no key)."""
    found = []
    for name, value in _query_pairs(url):
        words = re.sub(r"([a-z])([A-Z])", r"\1 \2", name).lower().replace("-", " ").replace("_", " ").split()
        if any(w in _QUERY_WORDS or w.endswith(_QUERY_ENDINGS) for w in words) and is_secret_value(value):
            found.append((name, value))
    return found


def without_query_credentials(url: str) -> str:
    """`url` with the value of each query parameter `query_credentials` finds written `***`."""
    secret = {name for name, _ in query_credentials(url)}
    if not secret:
        return url
    head, _, rest = url.partition("?")
    query, hash_, fragment = rest.partition("#")
    parts = [
        f"{raw.partition('=')[0]}=***" if unquote(raw.partition("=")[0]) in secret else raw for raw in query.split("&")
    ]
    return f"{head}?{'&'.join(parts)}{hash_}{fragment}"


def _query_pairs(url: str) -> list[tuple[str, str]]:
    query = url.partition("?")[2].partition("#")[0]
    pairs = (part.partition("=") for part in query.split("&") if part)
    return [(unquote(name), unquote(value)) for name, _, value in pairs]


def sources_of(value: str) -> frozenset[str]:
    """The variables `value` was read from or is held in now (empty: an inline key, or not held)."""
    with _lock:
        held = frozenset(_held.get(value, ()))
    return held | _env_found().get(value, frozenset())


def _spellings(value: str) -> tuple[str, ...]:
    """The ways a text may carry `value`: as is, JSON-escaped and HTML-escaped."""
    return tuple(dict.fromkeys((value, json.dumps(value)[1:-1], html.escape(value), html.escape(value, False))))


def masked(value: str) -> str:
    """What a held value is replaced by: its first 3 and last 4 characters for a long key (`sk-...1a2b`, which tells
    keys apart), `***` for a short one."""
    return f"{value[:3]}...{value[-4:]}" if len(value) >= 24 else "***"


def _current() -> _Matcher:
    """The matcher of the values held now (made again when they change)."""
    global _matcher
    with _lock:
        every = frozenset(_held) | frozenset(_env_found())
    if every == _matcher.values:
        return _matcher
    masks: dict[str, str] = {}
    spelled: dict[str, str] = {}
    for value in every:
        for form in _spellings(value):
            masks.setdefault(form, masked(value))
            spelled.setdefault(form, value)
    forms = sorted(masks, key=len, reverse=True)
    anywhere = [re.escape(f) for f in forms if len(f) >= PIECE_LEN]
    whole = [re.escape(f) for f in forms if len(f) < PIECE_LEN]
    parts = [*anywhere]
    if whole:
        parts.append(rf"(?<![{_TOKEN_CHARS}])(?:{'|'.join(whole)})(?![{_TOKEN_CHARS}])")
    long_forms = [f for f in forms if len(f) >= PIECE_LEN]
    used = {ord(c) for f in long_forms for c in f if c.isascii()}  # a run is ASCII: it starts and ends on a character
    grams = {f[i : i + PIECE_LEN]: (f, i) for f in long_forms for i in range(len(f) - PIECE_LEN + 1)}
    marks = bytes(1 if b in used else 0 for b in range(256)) if grams else b""
    # a long value alone: a short one may be any word of a prompt (headers read it only as a whole token)
    spelled_long = ((value, form) for value in every for form in (*_spellings(value), quote_plus(value)))
    bodies = {form.encode(): value for value, form in spelled_long if len(form) >= PIECE_LEN}
    _matcher = _Matcher(every, re.compile("|".join(parts)) if parts else None, masks, spelled, marks, grams, bodies)
    return _matcher


def _runs(text: str, marks: bytes) -> Iterator[tuple[int, str]]:
    """The runs of `text` of PIECE_LEN or more ASCII characters that held values are made of, each with where it
    starts in `text` (found in its bytes; where a character takes more than one byte, the text between runs is decoded
    once to count its characters)."""
    data = text.encode("utf-8", "surrogatepass")
    marked = data.translate(marks)
    byte, char = 0, 0  # where the last run started, in bytes and in characters
    at = marked.find(_RUN)
    while at >= 0:
        end = marked.find(b"\x00", at)
        end = len(marked) if end < 0 else end
        char += at - byte if len(data) == len(text) else len(data[byte:at].decode("utf-8", "surrogatepass"))
        byte = at
        yield char, data[at:end].decode("ascii")
        at = marked.find(_RUN, end)


def _grown(run: str, at: int, form: str, offset: int) -> tuple[int, int]:
    """Where the part of `run` around the gram of `form` found at `at` (its `offset` in `form`) that goes on as `form`
    does, both ways, starts and ends."""
    left = 0
    while left < min(at, offset) and run[at - left - 1] == form[offset - left - 1]:
        left += 1
    end, ahead = at + PIECE_LEN, offset + PIECE_LEN
    while end < len(run) and ahead < len(form) and run[end] == form[ahead]:
        end, ahead = end + 1, ahead + 1
    return at - left, end


def _pieces(text: str, matcher: _Matcher) -> list[tuple[int, int]]:
    """Where `text` holds runs of PIECE_LEN or more characters of a held value, each as long as it goes, in order and
    merged where they touch: what `mask` replaces, in one pass."""
    spans: list[tuple[int, int]] = []
    seen: dict[str, list[tuple[int, int]]] = {}  # a long word comes back often: its pieces are looked up once
    for base, run in _runs(text, matcher.marks) if matcher.grams else ():
        found = seen.get(run)
        if found is None:
            found = seen[run] = _pieces_of(run, matcher.grams)
        spans += [(base + start, base + end) for start, end in found]
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _pieces_of(run: str, grams: dict[str, tuple[str, int]]) -> list[tuple[int, int]]:
    """Where `run` holds pieces of held values, each as long as it goes."""
    found: list[tuple[int, int]] = []
    at = 0
    while at + PIECE_LEN <= len(run):
        hit = grams.get(run[at : at + PIECE_LEN])
        if hit is None:
            at += 1
            continue
        start, end = _grown(run, at, *hit)
        found.append((start, end))
        at = max(at + 1, end - PIECE_LEN + 1)  # a piece of another spelling may begin inside this one
    return found


def mask(text: str) -> str:
    """`text` with every held key's value (as is, JSON-escaped or HTML-escaped) replaced by its mask, and every run of
    PIECE_LEN or more of its characters by `***`."""
    if not text:
        return text
    matcher = _current()
    out = text
    if matcher.whole is not None:
        out = matcher.whole.sub(lambda m: matcher.masks[m.group(0)], out)
    spans = _pieces(out, matcher)
    if spans:
        cuts = [0, *(i for span in spans for i in span), len(out)]
        out = "***".join(out[cuts[i] : cuts[i + 1]] for i in range(0, len(cuts), 2))
    return text if out == text else out


def first_line(err: BaseException, limit: int = 300) -> str:
    """The first line of an error's message (its type's name when it has none), cut to `limit` characters: what a
    one-line report of it shows. A key the process holds is masked (a provider's error may quote it)."""
    text = mask(str(err)).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:limit]


def find_held(*texts: str) -> set[str]:
    """The held values `texts` carry (as `mask` finds them; a Basic credential's base64 is read too)."""
    matcher = _current()
    if matcher.whole is None:
        return set()
    joined = "\n".join(texts)
    found = {matcher.spelled[m.group(0)] for m in matcher.whole.finditer(joined) if m.group(0) in matcher.spelled}
    for text in texts:
        scheme, _, token = text.strip().partition(" ")
        if scheme.lower() == "basic" and token:
            with contextlib.suppress(binascii.Error, UnicodeDecodeError, ValueError):
                found |= find_held(base64.b64decode(token.strip(), validate=True).decode("utf-8"))
    return found


def held_in_body(body: bytes) -> set[str]:
    """The held values a request's body carries (as is, JSON-escaped or form-encoded: a key posted for a token, as
    LiteLLM posts watsonx's to its sign-in host): one substring search for each spelling, quick on a long prompt."""
    if not body:
        return set()
    return {value for form, value in _current().in_bodies.items() if form in body}


def mask_value(obj: Any, depth: int = 32) -> Any:
    """`obj` with every string inside it masked: dicts, lists and tuples rebuilt, an object that keeps its fields in
    `__dict__` (a client's response object) copied with its fields masked, anything else as it is; `obj` itself is
    not changed. What a store of structured values (the run's cache, a dataset) keeps."""
    if isinstance(obj, str):
        return mask(obj)
    if depth <= 0 or isinstance(obj, (int, float, bool, bytes, type)) or obj is None:
        return obj
    if isinstance(obj, dict):
        return {mask_value(k, depth - 1): mask_value(v, depth - 1) for k, v in obj.items()}
    if isinstance(obj, list):
        return [mask_value(v, depth - 1) for v in obj]
    if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
        return tuple(mask_value(v, depth - 1) for v in obj)
    fields = getattr(obj, "__dict__", None)
    if not isinstance(fields, dict):
        return obj
    masked_fields = {name: mask_value(value, depth - 1) for name, value in fields.items()}
    if all(masked_fields[name] is value for name, value in fields.items()):
        return obj
    clone = copy.copy(obj)
    clone.__dict__.update(masked_fields)
    return clone


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
