"""A loopback OpenAI-compatible chat server for tests and benchmarks.

It answers any DSPy signature: the output fields and their JSON schemas are read from
the ChatAdapter system prompt, and values are generated from the schema. It keeps a
request log (one JSON line per request: body hash, status, fault, whether the response
was delivered) so tests can check exactly-once behaviour against what the server saw.

Faults come in two kinds:
- sticky faults are chosen by a hash of the request's input fields, so the ChatAdapter
  call and its JSONAdapter fallback for the same inputs get the same fault
  (length, malformed, refusal, filter400);
- transient faults are drawn per request (429 with Retry-After, 500, 503, a connection reset,
  a hang past the client's timeout).

Rate limits: a cap on requests in flight (`max_concurrency`) and a requests-per-minute limit (`requests_per_minute`: a
bucket refilled at that rate that holds `rpm_burst_s` seconds of it; a request that finds it empty is answered 429
with the Retry-After of the next request it admits), stated as OpenAI states it (`x-ratelimit-limit-requests`,
`x-ratelimit-remaining-requests`, `x-ratelimit-reset-requests` on every answer) unless `rate_limit_headers` is off.

It speaks two formats: OpenAI chat completions (any POST) and Anthropic Messages (``POST .../v1/messages``: the
request is read as the chat body it stands for, the answer and the errors go out as Anthropic words them; see
loopback_anthropic.py). ``ServerConfig.anthropic`` makes it an OpenAI-only server instead: one that 404s that path, or
one that answers it in the OpenAI format.

Run standalone: ``python tests/loopback_server.py --port 0`` prints ``PORT <n>``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import random
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from loopback_anthropic import as_anthropic, min_cache_tokens, to_chat_body

_TOKEN = re.compile(r"\w+|[^\w\s]")
_FIELD_RE = re.compile(r"\[\[ ## (\w+) ## \]\]\n\{\1\}(?:\s+# note: the value you produce (.*))?")


def _note_schema(note: str | None) -> dict | None:
    """The JSON schema a ChatAdapter type note asks for (None: free text)."""
    if not note:
        return None
    if note.startswith("must adhere to the JSON schema: "):
        return json.loads(note.removeprefix("must adhere to the JSON schema: "))
    if "single int value" in note:
        return {"type": "integer"}
    if "single float value" in note:
        return {"type": "number"}
    if "True or False" in note:
        return {"type": "boolean"}
    if "one of: " in note:
        return {"enum": [x.strip() for x in note.split("one of: ", 1)[1].split(";")]}
    return None


_INPUT_RE = re.compile(r"\[\[ ## (\w+) ## \]\]\n(.*?)(?=\n\n\[\[ ## |\n\nRespond with|\Z)", re.S)

VOCAB = [
    "analyze",
    "design",
    "explain",
    "compare",
    "outline",
    "draft",
    "evaluate",
    "summarize",
    "describe",
    "plan",
    "write",
    "build",
    "estimate",
    "derive",
    "prove",
    "critique",
    "translate",
    "refactor",
    "debug",
    "optimize",
    "teach",
    "model",
    "measure",
    "predict",
    "river",
    "budget",
    "protein",
    "compiler",
    "orchestra",
    "glacier",
    "contract",
    "dataset",
    "poem",
    "theorem",
    "recipe",
    "garden",
    "startup",
    "museum",
    "vaccine",
    "satellite",
    "harbor",
    "ledger",
    "algorithm",
    "novel",
    "clinic",
    "turbine",
    "lecture",
    "survey",
    "neighborhood",
    "festival",
    "bridge",
    "battery",
    "market",
    "archive",
    "syllabus",
    "pipeline",
    "canyon",
    "league",
    "reactor",
    "volcano",
    "interview",
    "manuscript",
    "workshop",
    "telescope",
    "courtroom",
    "warehouse",
    "pharmacy",
    "library",
    "marathon",
    "ethics",
    "inflation",
    "migration",
    "erosion",
    "photosynthesis",
    "recursion",
    "encryption",
    "negotiation",
    "grammar",
    "harmony",
    "gravity",
    "friction",
    "memory",
    "trust",
    "privacy",
    "fairness",
    "latency",
    "entropy",
    "symmetry",
    "sustainability",
    "for",
    "a",
    "team",
    "of",
    "beginners",
    "with",
    "concrete",
    "examples",
    "in",
    "under",
    "three",
    "paragraphs",
    "using",
    "a",
    "table",
    "step",
    "by",
    "step",
    "from",
    "first",
    "principles",
    "with",
    "trade-offs",
    "and",
    "a",
    "short",
    "checklist",
    "for",
    "a",
    "skeptical",
    "reader",
]


def count_tokens(text: str) -> int:
    """The server's token count: words and punctuation marks."""
    return len(_TOKEN.findall(text))


_ENCODINGS: dict = {}


def tokens_of(text: str, tokenizer: str) -> list:
    """The tokens of `text` as the server counts them: words and punctuation marks; "chars4", a token every 4 characters
    (ceil(characters / 4), the rule of thumb providers give); or tiktoken's (its files come with LiteLLM: no
    download)."""
    if tokenizer == "words":
        return _TOKEN.findall(text)
    if tokenizer == "chars4":
        return [text[i : i + 4] for i in range(0, len(text), 4)]
    if tokenizer not in _ENCODINGS:
        import importlib.util
        import os

        spec = importlib.util.find_spec("litellm")
        os.environ.setdefault(
            "TIKTOKEN_CACHE_DIR", os.path.join(spec.submodule_search_locations[0], "litellm_core_utils", "tokenizers")
        )
        import tiktoken

        _ENCODINGS[tokenizer] = tiktoken.get_encoding(tokenizer)
    return [str(t) for t in _ENCODINGS[tokenizer].encode(text, disallowed_special=())]


@dataclass
class ServerConfig:
    """Behaviour of the loopback server; every rate is a probability in [0, 1]."""

    words_per_text: int = 60
    words_per_item: int = 14
    latency_s: float = 0.0
    latency_per_token_s: float = 0.0
    jitter: float = 0.0
    vocab_size: int = 0  # 0: words drawn uniformly from VOCAB; N: Zipf-distributed over N words, like real text
    max_concurrency: int = 0  # 0: no cap; above the cap the server answers 429
    requests_per_minute: float = 0  # 0: no limit; else a bucket refilled at this rate answers 429 when empty
    rpm_burst_s: float = 60.0  # the seconds of that rate the bucket holds (a minute's, as OpenAI's)
    rate_limit_headers: bool = True  # with requests_per_minute: the limit stated in each answer's headers
    retry_after_s: float = 0.05
    # a request body sent again before the Retry-After of its 429 has passed is answered 429 again (fault
    # `early_retry`), as a provider's rate limiter would: a test then asserts on the log, not on the clock
    enforce_retry_after: bool = False
    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_503: float = 0.0
    rate_reset: float = 0.0  # close the connection without an answer
    rate_hang: float = 0.0  # hold the request for hang_s (past the client's timeout), then drop it
    hang_s: float = 2.0
    # GET /slots as llama.cpp answers it: a slot for each request held, `next_token[0].n_decoded` growing at
    # slot_tokens_per_s while it is answered (its latency: generating) and still while it hangs (held, nothing written)
    report_slots: bool = False
    slot_tokens_per_s: float = 20.0
    sticky_length: float = 0.0
    sticky_malformed: float = 0.0
    sticky_refusal: float = 0.0
    # a request whose prompt (all its messages) holds every string of one of these groups is refused as sticky_refusal's
    # are: a fault aimed at some of a run's work (a teacher that will not write on one reference's topic)
    refuse_when: list = field(default_factory=list)
    sticky_filter400: float = 0.0
    sticky_missing: float = 0.0  # the last output field is left out
    sticky_wrongtype: float = 0.0  # every structured (list, number, enum) field holds prose
    sticky_empty: float = 0.0  # an empty message
    sticky_placeholder: float = 0.0  # every text field holds its own placeholder, `{name}` (a tiny model's echo)
    # what SmolLM2 writes in the keyless main job: every text field holds junk (a lone bracket, list markers, a cut-off
    # tag, a field name), and half the items of a list of instructions are a single word or a field name; with
    # `junk_items`, every list of instructions holds such items (every other one), whatever the draw
    sticky_junk: float = 0.0
    junk_items: bool = False
    sticky_bad_scores: float = 0.0  # integer fields get 11-99, whatever the schema says (a provider ignoring bounds)
    bad_scores_every: int = (
        0  # N: the N-th, 2N-th, ... request that asks for scores gets such scores (a count, whatever the order)
    )
    fail_all: bool = False
    fail_status: int = 0  # N: every chat request is answered with HTTP N (401: a key the server refuses; 404)
    # an error's message quotes the request's key header, as a careless gateway does (a 500's or a 401's body)
    echo_key: bool = False
    # every answer quotes it too, inside its first text field (a gateway that echoes the request into what it returns)
    echo_key_in_answers: bool = False
    # every answer quotes pieces of it instead: its first 20 characters, and the whole key broken in two by a newline
    echo_key_pieces: bool = False
    # each reply names a model of its own (`<model>-<seq>`): a gateway that says which replica answered
    new_model_each_reply: bool = False
    # POST .../messages: "messages" (the Anthropic Messages format), "404" (not found: an OpenAI-only server), "openai"
    # (answered in the OpenAI format, as a server that ignores the path would)
    anthropic: str = "messages"
    seed: int = 0
    # each answer drawn from the request itself (the words of its system prompt and turns, and its output format; not
    # its cache marks, nor how its text is cut into blocks) instead of from the order requests arrive in: two runs that
    # send the same requests get the same answers, however their calls interleave (two settings of one optimization)
    answers_by_request: bool = False
    log_path: str | None = None
    log_prompts: bool = False  # also log each request's system prompt and messages (tests, the token bench)
    # usage counted in words and punctuation marks, in 4-character chunks ("chars4"), or with tiktoken ("o200k_base",
    # "cl100k_base"); but for "words", a request's response_format is billed as input, as OpenAI bills the schema
    tokenizer: str = "words"
    cache_min_tokens: int = 1024
    cache_step: int = 128
    # Anthropic Messages requests: the fewest tokens a prefix marked with cache_control needs to be cached (0: the
    # model's minimum, as Anthropic's, loopback_anthropic.MIN_CACHE_TOKENS); unmarked prompts are never cached there
    marked_cache_min_tokens: int = 0
    # a real signal for optimizers: a prompt that carries few-shot demonstrations, or whose instructions carry
    # SIGNAL_RULE, gets answers with SIGNAL_PHRASE in their response fields, and a judge scoring a response scores it
    # `signal_bonus` higher when the phrase is in it (capped at 10; its scores are otherwise drawn as ever). What an
    # optimizer's proposer writes as a program's instructions carries SIGNAL_RULE (MIPROv2's proposed instruction,
    # GEPA's new instruction), and a draft that carries the phrase is revised keeping it. Every optimizer thus has a
    # better program within reach, and the uncompiled one never has it. Off, every score is noise: no prompt beats
    # another.
    signal: bool = False
    signal_bonus: int = 4
    # a pairwise judge with a taste (a real signal for `refed evaluate`): of two responses compared (response_a,
    # response_b, a verdict asked), the one that holds this phrase (case ignored) wins when only one does; otherwise
    # the verdict is drawn as ever ("": no taste)
    prefers: str = ""
    # served students: a chat request naming one of these models is answered in plain text, as a student answers an
    # instruction: the model's phrase ("": none), then words drawn as ever; one naming another model is answered 404
    # (as vLLM answers a name it does not serve)
    says: dict = field(default_factory=dict)
    # service tiers, as OpenAI answers them: every reply says which tier served it (`service_tier`: the one asked for,
    # "default" when none was); `flex_unavailable` of the requests asked on the flex tier are answered 429 "resource
    # unavailable" (flex capacity is short: nothing is billed); `served_tier` answers every request as served on that
    # tier whatever was asked ("": the tier asked for); `project_tier` serves a request naming no tier (or "auto") on
    # that tier, as an OpenAI project whose settings say so does ("": the default)
    flex_unavailable: float = 0.0
    served_tier: str = ""
    project_tier: str = ""
    flex_slower: float = 1.0  # a flex request's latency is this many times a default one's (bench/tiers.py)
    # OpenAI's reasoning models, by the request's model name (a regular expression; "" for none): on the OpenAI path
    # they refuse `max_tokens` and any temperature but 1 (a 400 worded as OpenAI words it), take
    # `max_completion_tokens` and `reasoning_effort`, and reason before they answer: hidden tokens billed as output,
    # counted apart in usage.completion_tokens_details.reasoning_tokens (logged as `reasoning_tokens`)
    reasoning_models: str = r"(o[1345]|gpt-5(\.\d+)*)(-(?!chat)[\w.-]+)?"
    reasoning_tokens: dict = field(default_factory=lambda: {"minimal": 0, "low": 48, "medium": 192, "high": 768})
    reasoning_effort: str = "medium"  # the effort of a request that names none (the model's own)
    reasoning_spread: float = 0.5  # each call's reasoning tokens are drawn within +-this share of its effort's count
    # a share of calls that reason up to their output limit (all of max_completion_tokens but the answer): the dearest
    # a call can be and still answer
    reasoning_tail: float = 0.0
    extra: dict = field(default_factory=dict)


def _echo_into(content: str, text: str) -> str:
    """`content` with `text` appended to its first text field (a JSON object's first string), or to its end."""
    try:
        obj = json.loads(content)
    except ValueError:
        return content + text
    if isinstance(obj, dict):
        first = next((k for k, v in obj.items() if isinstance(v, str)), None)
        if first is not None:
            obj[first] += text
            return json.dumps(obj)
    return content + text


def _aimed_at(messages: list[dict], groups: list) -> bool:
    """Whether the prompt holds every string of one of `groups`."""
    if not groups:
        return False
    prompt = "\n".join(_text_of(m.get("content")) for m in messages)
    return any(all(part in prompt for part in group) for group in groups)


def _served_on(cfg: ServerConfig, tier: str | None) -> str:
    """The tier a request asking for `tier` is served on, as its reply says."""
    if cfg.served_tier:
        return cfg.served_tier
    if tier in (None, "auto"):
        return cfg.project_tier or "default"
    return tier if tier in ("flex", "priority") else "default"


def _unit(key: str, salt: str) -> float:
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


# the servers of this process by log path: read_log waits for the lines of answers already sent
_LIVE_LOGS: dict[str, _State] = {}


class _State:
    @contextlib.contextmanager
    def holding(self, seq: int, generating: bool):
        """While the block runs, request `seq` holds a slot (writing its answer, or `generating` False: held idle)."""
        with self.lock:
            self.slots[seq] = (time.monotonic(), generating)
        try:
            yield
        finally:
            with self.lock:
                self.slots.pop(seq, None)

    def slot_report(self) -> list[dict]:
        """The slots as llama.cpp's GET /slots lists them (the fields a client reads)."""
        now = time.monotonic()
        with self.lock:
            held = sorted(self.slots.items())
        return [
            {
                "id": i,
                "id_task": seq,
                "is_processing": True,
                "next_token": [{"n_decoded": int((now - since) * self.cfg.slot_tokens_per_s) if generating else 0}],
            }
            for i, (seq, (since, generating)) in enumerate(held)
        ]

    def __init__(self, cfg: ServerConfig):
        self.cfg = cfg
        self.lock = threading.Lock()
        self.rng = random.Random(cfg.seed)
        self.in_flight = 0
        self.max_in_flight = 0
        self.slots: dict[int, tuple[float, bool]] = {}  # request seq -> (since when, generating) while it is held
        self.count = 0
        self.score_requests = 0
        self.bucket, self.filled_at = 0.0, 0.0  # the requests-per-minute bucket, and when it was last refilled
        self.prefixes: set[str] = set()
        self.not_before: dict[str, float] = {}  # body hash -> when (time.monotonic) its Retry-After has passed
        self.marked: set[str] = set()  # the prefixes marked with cache_control and written (Anthropic's cache)
        self.flex_rng = random.Random(cfg.seed + 2)  # which flex requests find no capacity (apart from other draws)
        self.log = open(cfg.log_path, "a", encoding="utf-8") if cfg.log_path else None  # noqa: SIM115
        # requests whose answer went out (the client may have acted on it) and whose log line is not written yet
        self.unlogged = 0
        if cfg.log_path:
            _LIVE_LOGS[str(Path(cfg.log_path).resolve())] = self

    def take_request(self) -> tuple[float | None, dict | None]:
        """Under the lock: a request takes one from the requests-per-minute bucket. Returns (None: admitted, else the
        seconds until one is admitted; the headers that state the limit, None when none are sent)."""
        cfg = self.cfg
        if not cfg.requests_per_minute:
            return None, None
        rate, now = cfg.requests_per_minute / 60.0, time.monotonic()
        room = max(1.0, rate * cfg.rpm_burst_s)
        self.bucket = min(room, self.bucket + (now - self.filled_at) * rate) if self.filled_at else room
        self.filled_at = now
        wait = None if self.bucket >= 1.0 else (1.0 - self.bucket) / rate
        if wait is None:
            self.bucket -= 1.0
        headers = {
            "x-ratelimit-limit-requests": f"{cfg.requests_per_minute:g}",
            "x-ratelimit-remaining-requests": str(int(self.bucket)),
            "x-ratelimit-reset-requests": f"{(room - self.bucket) / rate:.3f}s",
        }
        return wait, headers if cfg.rate_limit_headers else None

    def next_score_request(self) -> int:
        """Number this request among those that ask for scores (1, 2, ...)."""
        with self.lock:
            self.score_requests += 1
            return self.score_requests

    def record(self, entry: dict) -> None:
        if self.log:
            with self.lock:
                self.log.write(json.dumps(entry) + "\n")
                self.log.flush()

    def cached_prefix(self, tokens: list[str]) -> int:
        """Tokens served from a prompt-prefix cache, in the way OpenAI bills them."""
        cfg = self.cfg
        h = hashlib.sha256()
        best = 0
        keys = []
        for start in range(0, len(tokens), cfg.cache_step):
            chunk = tokens[start : start + cfg.cache_step]
            if len(chunk) < cfg.cache_step:
                break
            h.update("\x1f".join(chunk).encode())
            end = start + cfg.cache_step
            if end >= cfg.cache_min_tokens:
                key = h.copy().hexdigest()
                keys.append(key)
                with self.lock:
                    if key in self.prefixes:
                        best = end
        with self.lock:
            self.prefixes.update(keys)
        return best

    def marked_cache(self, model: str, text: str, ends: list[int], marks: list[int], minimum: int) -> tuple[int, int]:
        """(read, written) tokens of a prompt whose `text` has blocks ending at `ends`, `marks` of them marked with
        cache_control, as Anthropic serves it: the longest prefix ending at a block end (up to the last mark) that an
        earlier request wrote is read; what lies after it, up to the last marked prefix of at least `minimum` tokens,
        is written, and every such marked prefix is kept for later requests."""
        size = {end: len(tokens_of(text[:end], self.cfg.tokenizer)) for end in {*ends, *marks}}
        kept = [m for m in sorted(set(marks)) if size[m] >= minimum]
        if not kept:
            return 0, 0
        keys = {end: hashlib.sha256(f"{model}\x00{text[:end]}".encode()).hexdigest() for end in size if end <= kept[-1]}
        with self.lock:
            read = max((size[end] for end, key in keys.items() if key in self.marked), default=0)
            self.marked.update(keys[m] for m in kept)
        return read, max(0, size[kept[-1]] - read)


_SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "be", "da", "fu", "go", "hi", "ja", "po", "ze"]
_ZIPF: dict[int, tuple[list[str], list[float]]] = {}


def _zipf_vocab(size: int) -> tuple[list[str], list[float]]:
    """VOCAB followed by made-up words up to `size`, with cumulative Zipf (1/rank) weights."""
    if size not in _ZIPF:
        words = list(dict.fromkeys(VOCAB))
        i = 0
        while len(words) < size:
            n, word = i, ""
            for _ in range(3):
                n, r = divmod(n, len(_SYLLABLES))
                word += _SYLLABLES[r]
            words.append(word + str(i // len(_SYLLABLES) ** 3 or ""))
            i += 1
        cum, total = [], 0.0
        for rank in range(1, len(words) + 1):
            total += 1.0 / rank
            cum.append(total)
        _ZIPF[size] = (words, cum)
    return _ZIPF[size]


def _words(rng: random.Random, n: int, cfg: ServerConfig | None = None) -> str:
    if cfg is not None and cfg.vocab_size:
        words, cum = _zipf_vocab(cfg.vocab_size)
        return " ".join(rng.choices(words, cum_weights=cum, k=n))
    return " ".join(rng.choice(VOCAB) for _ in range(n))


SIGNAL_PHRASE = "A worked example makes this concrete."
SIGNAL_RULE = "Close every answer with a worked example."  # what a proposer writes into instructions, in signal mode
PROPOSALS = ("proposed_instruction", "new_instruction")  # MIPROv2's and GEPA's proposers' outputs
# what a flex request that finds no capacity is told (HTTP 429, error code resource_unavailable; it is not billed)
FILTERED = "The response was filtered due to the prompt triggering content management policy."
FLEX_UNAVAILABLE = "Resource unavailable: flex processing has no capacity for this request now. Please retry later."


def demonstrations(messages: list[dict]) -> int:
    """How many few-shot demonstrations a prompt carries: user/assistant pairs before the last user turn."""
    turns = [m.get("role") for m in messages if m.get("role") != "system"]
    return sum(1 for a, b in zip(turns, turns[1:], strict=False) if (a, b) == ("user", "assistant"))


def _text_of(content) -> str:
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content)
    return str(content or "")


def _resolve(schema: dict | None, defs: dict) -> dict | None:
    if isinstance(schema, dict) and "$ref" in schema:
        return defs.get(schema["$ref"].rsplit("/", 1)[-1], {})
    return schema


def _value(
    schema: dict | None, name: str, rng: random.Random, cfg: ServerConfig, inputs: dict, defs: dict | None = None
):
    """A value for one field: from its JSON schema (bounds honoured, as a grammar-constrained server does) or, with
    no schema, made-up text."""
    defs = defs or {}
    schema = _resolve(schema, defs)
    if schema is not None and schema.get("type") == "string" and "enum" not in schema:
        text = _value(None, name, rng, cfg, inputs)
        return text[: schema["maxLength"]] if "maxLength" in schema else text
    if schema is None:
        if name in ("n", "count") or name.endswith("_count"):
            return rng.randint(1, 5)
        words = cfg.words_per_text if "response" in name or name in ("text", "answer") else cfg.words_per_item
        return _words(rng, words, cfg).capitalize() + "."
    kind = schema.get("type")
    if kind == "array":
        n = inputs.get("n")
        count = int(n) if isinstance(n, str) and n.strip().isdigit() else 3
        count = max(schema.get("minItems", 0), min(count, schema.get("maxItems", count)))
        item = schema.get("items", {})
        if cfg.extra.get("same_items"):  # a teacher that keeps saying the same things: every list, the same items
            rng = random.Random(0)
        return [_value(item, "item", rng, cfg, {}, defs) for _ in range(count)]
    if kind == "object":
        return {k: _value(v, k, rng, cfg, {}, defs) for k, v in schema.get("properties", {}).items()}
    if kind in ("integer", "number"):
        return rng.randint(max(1, schema.get("minimum", 1)), min(10, schema.get("maximum", 10)))
    if kind == "boolean":
        return rng.random() < 0.5
    if "enum" in schema:
        return rng.choice(schema["enum"])
    return _words(rng, cfg.words_per_item, cfg)


_TEMPLATE_KEY = re.compile(r'^\s*"(\w+)"\s*:\s*(.*)$')


def template_schema(text: str) -> dict | None:
    """The JSON schema of the reply a hand-written prompt shows as a template after its "Output Format" heading, one
    key a line (`"key": str`, `"key": "what to write"`, `"key": [...]` or `list`, `"key": {` opening an object), as the
    paper's code asks (bench/billed_tokens.py); a list whose line says "of N" holds N items. None without one."""
    headings = list(re.finditer(r"^#+ *Output Format", text, re.M))
    start = text.find("{", headings[-1].end()) if headings else -1
    if start < 0:
        return None
    root: dict = {"type": "object", "properties": {}}
    stack = [root]
    for line in text[start + 1 :].splitlines():
        if line.strip().startswith("}"):
            stack.pop()
            if not stack:
                break
            continue
        found = _TEMPLATE_KEY.match(line)
        if not found:
            continue
        name, rest = found.groups()
        if rest.startswith("{"):
            node: dict = {"type": "object", "properties": {}}
            stack.append(node)
        elif rest.startswith(("[", "list")):
            count = re.search(r"\bof (\d+)\b", rest)
            n = int(count.group(1)) if count else 3
            node = {"type": "array", "items": {"type": "string"}, "minItems": n, "maxItems": n}
        else:
            node = {"type": "string"}
        stack[-2 if rest.startswith("{") else -1]["properties"][name] = node
    return root if root["properties"] else None


def _last_user_text(messages: list[dict]) -> str:
    return next((_text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")


_SKETCH_LINE = re.compile(r'^( *)- (?:"(\w+)"|\[\[ ## (\w+) ## \]\]) \(([^)]*)\)')


def _sketch_kind(kind: str) -> dict:
    """The JSON schema of one kind refed's prompt names (refed_dspy.adapters.wording): "a string", "an integer from 1
    to 10", 'one of "A", "B"', "a list of exactly 3 strings", "an object", ..."""
    kind = kind.split(", as JSON")[0].split(" or ")[0]
    if kind.startswith("one of "):
        return {"enum": re.findall(r'"([^"]*)"', kind)}
    if kind.startswith(("an integer", "a number")):
        node = {"type": "integer" if kind.startswith("an integer") else "number"}
        span = re.search(r"from (-?\d+) to (-?\d+)", kind)
        if span:
            node["minimum"], node["maximum"] = int(span.group(1)), int(span.group(2))
        return node
    if kind.startswith("a list of "):
        node = {"type": "array"}
        count = re.match(r"a list of (?:exactly (\d+) |(\d+) to (\d+) |at least (\d+) |at most (\d+) )?(\w+)", kind)
        exact, low, high, least, most, items = count.groups()
        if exact:
            node["minItems"] = node["maxItems"] = int(exact)
        elif low:
            node["minItems"], node["maxItems"] = int(low), int(high)
        elif least or most:
            node["minItems" if least else "maxItems"] = int(least or most)
        singular = {"strings": "a string", "integers": "an integer", "numbers": "a number", "objects": "an object"}
        node["items"] = _sketch_kind(singular.get(items, "a string"))
        return node
    if kind.startswith("an object"):
        return {"type": "object", "properties": {}}
    if kind.startswith("true or false"):
        return {"type": "boolean"}
    return {"type": "string"}


def sketch_schema(system: str) -> dict | None:
    """The JSON schema of the reply refed's lean prompt describes (refed_dspy.adapters.wording): the keys (or chat
    markers) listed after its "Reply with" line, one a line, a nested object's keys indented under it. None without
    one."""
    if "\nReply with " not in "\n" + system:
        return None
    root: dict = {"type": "object", "properties": {}}
    parents = [(-1, root)]
    for line in system.split("Reply with ", 1)[1].splitlines()[1:]:
        found = _SKETCH_LINE.match(line)
        if not found:
            break
        indent, key, marker, kind = found.groups()
        node = _sketch_kind(kind)
        while parents[-1][0] >= len(indent):
            parents.pop()
        parent = parents[-1][1]
        parent = parent.get("items", parent) if parent.get("type") == "array" else parent
        parent.setdefault("properties", {})[key or marker] = node
        parents.append((len(indent), node))
    return root if root["properties"] else None


def output_names(messages: list[dict], response_schema: dict | None = None) -> list[str]:
    """The output field names a prompt asks for (they name the signature): DSPy's field list, the response schema,
    refed's lean format (sketch_schema), or the keys of the reply template a hand-written prompt shows."""
    system = next((m["content"] for m in messages if m["role"] == "system"), "")
    out_part = system.split("Your output fields are:")[-1] if "Your output fields are:" in system else ""
    names = re.findall(r"^\d+\. `(\w+)`", out_part.split("All interactions")[0], re.M)
    if not names:
        shown = response_schema or sketch_schema(system) or template_schema(_last_user_text(messages)) or {}
        names = list(shown.get("properties", {}))
    return names


def _json_notes(system: str) -> dict[str, dict | None]:
    """Output schemas from a JSONAdapter system prompt (its structure block is a JSON object of notes)."""
    block = system.split("Outputs will be a JSON object with the following fields.", 1)
    if len(block) < 2:
        return {}
    try:
        fields = json.loads(block[1].split("\nIn adhering to this structure", 1)[0].strip())
    except json.JSONDecodeError:
        return {}
    out = {}
    for name, text in fields.items():
        note = str(text).split("# note: the value you produce ", 1)
        out[name] = _note_schema(note[1]) if len(note) == 2 else None
    return out


def _outputs(messages: list[dict], response_schema: dict | None) -> tuple[list[str], dict, dict]:
    """The output fields a prompt asks for, their schemas (where the prompt states them) and the schemas' $defs."""
    system = next((m["content"] for m in messages if m["role"] == "system"), "")
    names = output_names(messages)
    # the chat format's notes; a JSON prompt states its outputs' notes in a JSON block (its inputs match _FIELD_RE too)
    schemas = {m.group(1): _note_schema(m.group(2)) for m in _FIELD_RE.finditer(system)} | _json_notes(system)
    defs = {}
    if response_schema is None and not schemas:  # refed's lean prompt, or a hand-written one with a JSON template
        response_schema = sketch_schema(system) or template_schema(_last_user_text(messages))
    if response_schema is not None:  # a json_schema response_format: the server follows it, bounds and all
        schemas, defs = response_schema.get("properties", {}), response_schema.get("$defs", {})
        names = list(schemas)
    return names, schemas, defs


def asks_for_scores(messages: list[dict], response_schema: dict | None) -> bool:
    """The prompt asks for at least one integer field (a judge's scores)."""
    names, schemas, defs = _outputs(messages, response_schema)
    return any((_resolve(schemas.get(n), defs) or {}).get("type") == "integer" for n in names)


def _answer(
    messages: list[dict],
    rng: random.Random,
    cfg: ServerConfig,
    json_mode: bool,
    drop_last: bool = False,
    wrong_types: bool = False,
    response_schema: dict | None = None,
    bad_scores: bool = False,
    placeholders: bool = False,
    junk: bool = False,
) -> str:
    first_user = next((m["content"] for m in messages if m["role"] == "user"), "")
    if isinstance(first_user, list):
        first_user = " ".join(part.get("text", "") for part in first_user)
    names, schemas, defs = _outputs(messages, response_schema)
    inputs = {m.group(1): m.group(2).strip() for m in _INPUT_RE.finditer(first_user)}
    if not names:
        names = ["answer"]
    values = {name: _value(schemas.get(name), name, rng, cfg, inputs, defs) for name in names}
    if cfg.signal:
        values = _with_signal(values, messages, cfg)
    if cfg.prefers and "verdict" in values and {"response_a", "response_b"} <= inputs.keys():
        holds = [cfg.prefers.lower() in inputs[k].lower() for k in ("response_a", "response_b")]
        if holds[0] != holds[1]:
            values["verdict"] = "A" if holds[0] else "B"
    if bad_scores:
        values = {
            k: rng.randint(11, 99) if isinstance(v, int) and not isinstance(v, bool) else v for k, v in values.items()
        }
    if placeholders:
        values = {k: (f"{{{k}}}" if isinstance(v, str) else v) for k, v in values.items()}
    if junk:
        values = {k: _junk(v, rng, list(inputs)) for k, v in values.items()}
    elif cfg.junk_items:
        values = {k: (_junk(v, rng, list(inputs)) if isinstance(v, list) else v) for k, v in values.items()}
    if drop_last and len(values) > 1:
        values.pop(names[-1])
    if wrong_types:
        values = {k: (v if isinstance(v, str) else "see the text above, " + _words(rng, 6)) for k, v in values.items()}
    if json_mode:
        return json.dumps(values)
    parts = []
    for name, val in values.items():
        text = val if isinstance(val, str) else json.dumps(val)
        parts.append(f"[[ ## {name} ## ]]\n{text}")
    parts.append("[[ ## completed ## ]]")
    return "\n\n".join(parts)


JUNK_TEXTS = ("{", "1. 2.", "<label for=", "```", "- ")
JUNK_ITEMS = ("effect", "Summarize.", "<label for=")


def _junk(value, rng: random.Random, names: list[str]):
    """A text field's junk (or an input's field name), or a list of text with every other item junk: the first of them
    a single word (`effect`, `Summarize.`), so that every such list holds an item the gate drops as not an instruction
    (a CI run on Ray drew field names and markup alone for all of them), the others drawn from every kind."""
    if isinstance(value, str):
        return rng.choice([*JUNK_TEXTS, *names[:1]])
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return [
            rng.choice(JUNK_ITEMS[:2] if i == 1 else [*JUNK_ITEMS, *names]) if i % 2 else v for i, v in enumerate(value)
        ]
    return value


def _with_signal(values: dict, messages: list[dict], cfg: ServerConfig) -> dict:
    """Signal mode: demonstrations in the prompt, SIGNAL_RULE in its instructions or the phrase in the draft it revises
    make better answers, and the judge sees it; a proposer's instructions carry SIGNAL_RULE (ServerConfig.signal)."""
    last_user = next((_text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
    given = {m.group(1): m.group(2) for m in _INPUT_RE.finditer(last_user)}
    judged = given.get("response")
    system = next((_text_of(m.get("content")) for m in messages if m.get("role") == "system"), "")
    drafts = [text for name, text in given.items() if "draft" in name]
    better = bool(demonstrations(messages)) or SIGNAL_RULE in system or any(SIGNAL_PHRASE in d for d in drafts)
    out = dict(values)
    for name, value in values.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int) and judged is not None and SIGNAL_PHRASE in judged:  # a judge's score
            out[name] = min(10, value + cfg.signal_bonus)
        elif isinstance(value, str) and "response" in name and better:
            out[name] = f"{value} {SIGNAL_PHRASE}"
        elif isinstance(value, str) and name in PROPOSALS:
            out[name] = f"{value} {SIGNAL_RULE}"
    return out


_EFFORTS = ("minimal", "low", "medium", "high")


def _reasoning_refusal(req: dict, cfg: ServerConfig) -> dict | None:
    """The error body OpenAI answers a reasoning model's request with (HTTP 400), None for a request it takes."""
    if req.get("max_tokens") is not None:
        return {
            "message": "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead.",
            "type": "invalid_request_error",
            "param": "max_tokens",
            "code": "unsupported_parameter",
        }
    temperature = req.get("temperature")
    if temperature is not None and temperature != 1:
        return {
            "message": f"Unsupported value: 'temperature' does not support {temperature} with this model. "
            "Only the default (1) value is supported.",
            "type": "invalid_request_error",
            "param": "temperature",
            "code": "unsupported_value",
        }
    effort = req.get("reasoning_effort")
    if effort is not None and effort not in _EFFORTS:
        return {
            "message": f"Invalid value: '{effort}'. Supported values are: 'minimal', 'low', 'medium', and 'high'.",
            "type": "invalid_request_error",
            "param": "reasoning_effort",
            "code": "invalid_value",
        }
    return None


def _reasoning_tokens(req: dict, cfg: ServerConfig, rng: random.Random, answer_tokens: int) -> int:
    """The hidden tokens a reasoning model spends on one request: its effort's count, spread; in the tail, all of
    its output limit but the answer."""
    limit = req.get("max_completion_tokens")
    if cfg.reasoning_tail and limit and rng.random() < cfg.reasoning_tail:
        return max(0, int(limit) - answer_tokens)
    base = cfg.reasoning_tokens.get(req.get("reasoning_effort") or cfg.reasoning_effort, 0)
    return max(0, round(base * (1 + rng.uniform(-cfg.reasoning_spread, cfg.reasoning_spread))))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body go out in two writes: with Nagle on, the body waits for the client's delayed
    # ACK (40 ms on Linux), which added 40 ms to every call; real providers do not do that
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, *args):  # quiet
        pass

    _owes_a_line = False  # set on a chat request: its log line is written after its answer
    _counted = False  # that request's answer is counted in state.unlogged

    def _answering(self) -> None:
        """The answer (or the reset) goes out now: until its line is written, read_log waits for it. The request is
        no longer in flight: its client may send the next one as soon as these bytes arrive, before this thread
        runs again."""
        self._landed()
        if self._owes_a_line and not self._counted:
            self._counted = True
            with self.server.state.lock:
                self.server.state.unlogged += 1

    _flying = False  # this request is counted in the server's in_flight

    def _landed(self) -> None:
        if self._flying:
            self._flying = False
            with self.server.state.lock:
                self.server.state.in_flight -= 1

    _wire = "openai"  # the format of the request being answered: its answer goes out in the same one
    _limit_headers: dict | None = None  # the requests-per-minute limit as the answer states it
    _over_rate: float | None = None  # the request found the requests-per-minute bucket empty: the seconds to wait

    def _send(self, status: int, payload: dict, headers: dict | None = None) -> bool:
        self._answering()
        if self._wire == "anthropic":
            payload = as_anthropic(status, payload)
        body = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in {**(self._limit_headers or {}), **(headers or {})}.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def _send_raw(self, status: int, payload) -> None:
        if isinstance(payload, str):  # a JSONL file's content
            body = payload.encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/binary")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass
        else:
            self._send(status, payload)

    def do_GET(self):  # noqa: N802
        st = self.server.state
        if st.batches.handles(self.path) and st.cfg.fail_status:
            self._send(st.cfg.fail_status, {"error": {"message": f"the loopback server answers {st.cfg.fail_status}"}})
            return
        if st.batches.handles(self.path):
            from urllib.parse import parse_qsl, urlsplit

            self._send_raw(*st.batches.get(self.path, dict(parse_qsl(urlsplit(self.path).query))))
            return
        if self.path.endswith("/stats"):
            self._send(200, {"count": st.count, "max_in_flight": st.max_in_flight})
        elif self.path.endswith("/slots") and st.cfg.report_slots:
            self._send(200, st.slot_report())
        elif self.path.endswith("/slots"):
            self._send(404, {"error": {"message": "no /slots here", "type": "not_found_error"}})
        else:
            self._send(200, {"object": "list", "data": [{"id": "loopback", "object": "model"}]})

    def do_POST(self):  # noqa: N802
        st = self.server.state
        cfg = st.cfg
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        self._wire, self._limit_headers = "openai", None
        if st.batches.handles(self.path):
            st.record(
                {
                    "batch_api": "POST",
                    "path": self.path,
                    "auth": self.headers.get("api-key")
                    or self.headers.get("x-api-key")
                    or self.headers.get("Authorization"),
                }
            )
            if cfg.fail_status:
                self._send(cfg.fail_status, {"error": {"message": f"the loopback server answers {cfg.fail_status}"}})
            else:
                self._send_raw(*st.batches.post(self.path, self.headers, raw))
            return
        sha = hashlib.sha256(raw).hexdigest()[:16]
        try:
            req = json.loads(raw)
        except json.JSONDecodeError:
            self._send(400, {"error": {"message": "invalid JSON", "type": "invalid_request_error"}})
            return
        with st.lock:
            st.count += 1
            seq = st.count
            st.in_flight += 1
            self._flying = True
            st.max_in_flight = max(st.max_in_flight, st.in_flight)
            over_cap = cfg.max_concurrency and st.in_flight > cfg.max_concurrency
            self._over_rate, self._limit_headers = st.take_request()
            draw = st.rng.random()
            rng = random.Random(st.rng.random())
        entry = {"seq": seq, "t": time.time(), "sha": sha, "path": self.path, "key_header": self._key_header()}
        if self.path.split("?")[0].rstrip("/").endswith("/messages"):  # an Anthropic Messages request
            entry["anthropic_version"] = self.headers.get("anthropic-version")
            if cfg.anthropic == "404":
                req = None
            elif cfg.anthropic == "messages":
                req, self._wire = to_chat_body(req), "anthropic"
        if self.headers.get("X-Custom-Id"):  # a batch line, answered for the batch API
            entry.update(custom_id=self.headers["X-Custom-Id"], batch=self.headers.get("X-Batch-Id"))
        t0 = time.perf_counter()
        self._owes_a_line, self._counted = True, False
        try:
            if req is None:
                entry.update(status=404, fault="not_found")
                entry["delivered"] = self._send(404, {"detail": "Not Found"})
            else:
                self._serve(req, raw, rng, draw, bool(over_cap), entry)
        finally:
            entry["service_s"] = round(time.perf_counter() - t0, 6)  # request read -> answer sent
            self._landed()
            st.record(entry)
            if self._counted:
                with st.lock:
                    st.unlogged -= 1
            self._owes_a_line = False

    def _key_header(self) -> str | None:
        """The header that carried an API key, by name (the key itself is not logged)."""
        return next((h for h in ("x-api-key", "api-key", "authorization") if self.headers.get(h)), None)

    def _serve(self, req: dict, raw: bytes, rng: random.Random, draw: float, over_cap: bool, entry: dict) -> None:
        st = self.server.state
        cfg = st.cfg
        messages = req.get("messages") or []
        user = messages[-1].get("content", "") if messages else ""
        if isinstance(user, list):
            user = " ".join(part.get("text", "") for part in user)
        # the inputs (the first user turn without the format reminder, the same in every adapter's prompt), then any
        # later turns (a repair: the bad reply and what was wrong), so a repair is a new draw of the sticky faults
        turns = [m for m in messages if m.get("role") != "system"]
        texts = [
            " ".join(p.get("text", "") for p in t["content"])
            if isinstance(t.get("content"), list)
            else str(t.get("content") or "")
            for t in turns
        ]
        base = texts[0].split("\n\nRespond with")[0] if texts else ""
        key = "\x1e".join([base, *texts[1:]])
        entry["key"] = hashlib.sha256(key.encode()).hexdigest()[:16]
        entry["base"] = hashlib.sha256(base.encode()).hexdigest()[:16]
        entry["turns"] = len(turns)
        if cfg.answers_by_request:
            system = next((_text_of(m.get("content")) for m in messages if m.get("role") == "system"), "")
            fmt_text = json.dumps(req.get("response_format"), sort_keys=True)
            words = " ".join(f"{system}\x1e{key}".split())  # a prompt cut into marked blocks reads as the same words
            drawn = hashlib.sha256("\x1e".join([str(cfg.seed), words, fmt_text]).encode()).hexdigest()
            rng = random.Random(int(drawn[:16], 16))
        fmt = req.get("response_format") or {}
        response_schema = (fmt.get("json_schema") or {}).get("schema") if fmt.get("type") == "json_schema" else None
        entry["outputs"] = output_names(messages, response_schema)
        entry["model"] = req.get("model")
        # the sampling and provider settings the request carried (what an LM was really called with)
        entry["settings"] = {
            k: v
            for k, v in req.items()
            if k not in ("messages", "model") and not k.startswith("_") and isinstance(v, (int, float, str, bool))
        }
        if cfg.log_prompts:
            entry["system"] = next((m.get("content", "") for m in messages if m.get("role") == "system"), "")
            entry["messages"] = messages
            entry["response_format"] = req.get("response_format")

        def fail(status: int, kind: str, message: str, headers: dict | None = None):
            entry.update(status=status, fault=kind)
            if headers and "Retry-After" in headers:  # from before the answer leaves: a client cannot wait less
                with st.lock:
                    st.not_before[entry["sha"]] = time.monotonic() + float(headers["Retry-After"])
            if cfg.echo_key:
                name = self._key_header()
                message += f" (request header {name}: {self.headers.get(name)})" if name else " (no key header)"
            entry["delivered"] = self._send(
                status, {"error": {"message": message, "type": kind, "code": kind}}, headers
            )

        reasoning = self._wire == "openai" and bool(
            cfg.reasoning_models and re.fullmatch(cfg.reasoning_models, str(req.get("model") or ""))
        )
        if reasoning:
            refused = _reasoning_refusal(req, cfg)
            if refused is not None:
                entry.update(status=400, fault="bad_request", error_param=refused["param"])
                entry["delivered"] = self._send(400, {"error": refused})
                return None
            entry["reasoning_effort"] = req.get("reasoning_effort")
        if cfg.fail_all:
            return fail(500, "server_error", "the loopback server fails every request")
        if cfg.fail_status:
            return fail(cfg.fail_status, f"status_{cfg.fail_status}", f"the loopback server answers {cfg.fail_status}")
        if req.get("_refused"):  # a request Anthropic's API refuses (its cache_control marks)
            return fail(400, "invalid_request_error", req["_refused"])
        window = cfg.extra.get("not_found_seq")  # [first, last]: those requests (by arrival) are answered 404
        if cfg.says and req.get("model") not in cfg.says:
            return fail(404, "model_not_found", f"The model `{req.get('model')}` does not exist.")
        if window and window[0] <= entry["seq"] <= window[1]:
            return fail(404, "not_found", f"the loopback server has no route for request {entry['seq']}")
        # {output field: "500" | "filter400"}: every request that asks for that field is answered so, every time (one
        # call of a task that keeps failing while its sibling's failure is for good)
        aimed = cfg.extra.get("fault_for_output", {})
        for name in entry["outputs"]:
            if aimed.get(name) == "500":
                return fail(500, "transient_500", "injected 500")
            if aimed.get(name) == "filter400":
                return fail(400, "content_filter", FILTERED)
        if cfg.enforce_retry_after and time.monotonic() < st.not_before.get(entry["sha"], 0.0):
            return fail(
                429, "early_retry", "sent again before its Retry-After", {"Retry-After": str(cfg.retry_after_s)}
            )
        if over_cap:
            return fail(429, "rate_limit_exceeded", "concurrency cap", {"Retry-After": str(cfg.retry_after_s)})
        if self._over_rate is not None:
            return fail(429, "rate_limit_exceeded", "requests per minute", {"Retry-After": f"{self._over_rate:.3f}"})
        edges = [
            (cfg.rate_429, 429),
            (cfg.rate_500, 500),
            (cfg.rate_503, 503),
            (cfg.rate_reset, "reset"),
            (cfg.rate_hang, "hang"),
        ]
        acc = 0.0
        for rate, status in edges:
            acc += rate
            if draw < acc and status in ("reset", "hang"):
                if status == "hang":
                    with st.holding(entry["seq"], generating=False):
                        time.sleep(cfg.hang_s)
                entry.update(status=0, fault=status, delivered=False)
                self.close_connection = True
                self._answering()
                try:  # a reset: RST instead of an answer
                    import socket
                    import struct

                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                except OSError:
                    pass
                return None
            if draw < acc:
                headers = {"Retry-After": str(cfg.retry_after_s)} if status == 429 else None
                return fail(status, f"transient_{status}", f"injected {status}", headers)
        tier = req.get("service_tier")
        if tier == "flex" and cfg.flex_unavailable:
            with st.lock:
                unavailable = st.flex_rng.random() < cfg.flex_unavailable
            if unavailable:
                return fail(429, "resource_unavailable", FLEX_UNAVAILABLE)
        if _unit(key, "filter400") < cfg.sticky_filter400:
            return fail(400, "content_filter", FILTERED)

        json_mode = "response_format" in req or "Respond with a JSON object" in user or bool(template_schema(user))
        finish = "stop"
        fault = None
        if _unit(key, "refusal") < cfg.sticky_refusal or _aimed_at(messages, cfg.refuse_when):
            content, finish, fault = None, "content_filter", "refusal"
        else:
            bad_scores = _unit(key, "scores") < cfg.sticky_bad_scores or bool(
                cfg.bad_scores_every
                and asks_for_scores(messages, response_schema)
                and st.next_score_request() % cfg.bad_scores_every == 0
            )
            content = _answer(messages, rng, cfg, json_mode, response_schema=response_schema, bad_scores=bad_scores)
            if req.get("model") in cfg.says:
                content = f"{cfg.says[req['model']]} {_words(rng, 12)}".strip()
            fault = "bad_scores" if bad_scores else None
            if _unit(key, "length") < cfg.sticky_length:
                content, finish, fault = content[: len(content) // 3], "length", "length"
            elif _unit(key, "malformed") < cfg.sticky_malformed:
                content, fault = "I'm not sure how to format this: " + _words(rng, 20), "malformed"
            elif _unit(key, "missing") < cfg.sticky_missing:
                content, fault = (
                    _answer(messages, rng, cfg, json_mode, drop_last=True, response_schema=response_schema),
                    "missing",
                )
            elif _unit(key, "wrongtype") < cfg.sticky_wrongtype:
                content, fault = (
                    _answer(messages, rng, cfg, json_mode, wrong_types=True, response_schema=response_schema),
                    "wrongtype",
                )
            elif _unit(key, "empty") < cfg.sticky_empty:
                content, fault = "", "empty"
            elif _unit(key, "placeholder") < cfg.sticky_placeholder:
                content, fault = (
                    _answer(messages, rng, cfg, json_mode, response_schema=response_schema, placeholders=True),
                    "placeholder",
                )
            elif _unit(key, "junk") < cfg.sticky_junk:
                content, fault = (
                    _answer(messages, rng, cfg, json_mode, response_schema=response_schema, junk=True),
                    "junk",
                )

        if cfg.echo_key_in_answers and content:
            name = self._key_header()
            content = _echo_into(content, f" (request header {name}: {self.headers.get(name)})" if name else "")
        if cfg.echo_key_pieces and content:
            name = self._key_header()
            key = (self.headers.get(name) or "").removeprefix("Bearer ") if name else ""
            half = len(key) // 2
            content = _echo_into(content, f" (your key begins {key[:20]}; it reads {key[:half]}\n{key[half:]})")
        prompt_text = "\n".join(str(m.get("content", "")) for m in messages)
        if cfg.tokenizer != "words" and req.get("response_format"):  # a provider bills the schema it was sent as input
            prompt_text += json.dumps(req["response_format"])
        prompt_tokens = tokens_of(prompt_text, cfg.tokenizer)
        completion_tokens = len(tokens_of(content or "", cfg.tokenizer))
        thought = _reasoning_tokens(req, cfg, rng, completion_tokens) if reasoning else 0
        limit = req.get("max_completion_tokens")
        if reasoning and limit and thought + completion_tokens > limit:  # the thinking used up the output limit
            thought, content, finish, fault = limit, "", "length", "length"
            completion_tokens = 0
        completion_tokens += thought
        written = 0
        if self._wire == "anthropic":  # Anthropic caches what a request marks, nothing else
            minimum = cfg.marked_cache_min_tokens or min_cache_tokens(req.get("model"))
            ends, marks = req.get("_blocks") or [], req.get("_marks") or []
            cached, written = st.marked_cache(str(req.get("model")), prompt_text, ends, marks, minimum)
            entry["cache_marks"] = len(req.get("_marks") or [])
        else:
            cached = st.cached_prefix(prompt_tokens)
        delay = cfg.latency_s + cfg.latency_per_token_s * completion_tokens
        if tier == "flex":
            delay *= cfg.flex_slower
        if cfg.jitter:
            delay *= max(0.0, 1.0 + rng.uniform(-cfg.jitter, cfg.jitter))
        if delay > 0:
            with st.holding(entry["seq"], generating=True):
                time.sleep(delay)
        payload = {
            "id": f"chatcmpl-{entry['seq']}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req.get("model", "loopback") + (f"-{entry['seq']}" if cfg.new_model_each_reply else ""),
            "service_tier": _served_on(cfg, tier),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
            "usage": {
                "prompt_tokens": len(prompt_tokens),
                "completion_tokens": completion_tokens,
                "total_tokens": len(prompt_tokens) + completion_tokens,
                "prompt_tokens_details": {
                    "cached_tokens": cached,
                    **({"cache_write_tokens": written} if written else {}),
                },
            },
        }
        if reasoning:
            payload["usage"]["completion_tokens_details"] = {"reasoning_tokens": thought}
            entry["reasoning_tokens"] = thought
        entry.update(
            status=200,
            fault=fault,
            service_tier=payload["service_tier"],
            prompt_tokens=len(prompt_tokens),
            completion_tokens=completion_tokens,
            cached_tokens=cached,
        )
        if written:
            entry["cache_write_tokens"] = written
        entry["delivered"] = self._send(200, payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024

    def __init__(self, addr, cfg: ServerConfig):
        super().__init__(addr, _Handler)
        self.state = _State(cfg)
        from loopback_batches import BatchAPI

        self.state.batches = BatchAPI(self.state, lambda: self.server_address[1])

    def handle_error(self, request, client_address):  # a client that hung up is not a server error
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class LoopbackServer:
    """Context manager running the server on 127.0.0.1 in a background thread."""

    def __init__(self, cfg: ServerConfig | None = None, port: int = 0):
        self.cfg = cfg or ServerConfig()
        self._server = _Server(("127.0.0.1", port), self.cfg)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def state(self) -> _State:
        return self._server.state

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def wait_idle(self, timeout_s: float = 60.0) -> None:
        """Wait until the server holds no request: one a client gave up on (a hang) is logged once its hang is over."""
        deadline = time.monotonic() + timeout_s
        while self._server.state.in_flight:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the loopback server still holds {self._server.state.in_flight} requests")
            time.sleep(0.01)

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._server.state.log:
            self._server.state.log.close()


def read_log(path: str | Path) -> list[dict]:
    """The server's request log, one dict per request. A server of this process writes a request's line just after
    its answer, so a client may be done before the line is there: the read waits (up to 10 s) for the lines of
    answers already sent (a CI run read 6 lines of 7 answered). Lines come in the order they were written, so a
    request answered just before the next one came may have its line after that one's (a CI run saw two in turn
    swapped): a request's `seq` is the order of arrival. From another process, a last line without its newline is
    not in the log yet."""
    state = _LIVE_LOGS.get(str(Path(path).resolve()))
    deadline = time.monotonic() + 10
    while state is not None and state.unlogged > 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    complete, _, _partial = Path(path).read_text().rpartition("\n")
    return [json.loads(line) for line in complete.splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--config", default="{}", help="ServerConfig fields as JSON")
    args = parser.parse_args()
    cfg = ServerConfig(**json.loads(args.config))
    with LoopbackServer(cfg, args.port) as server:
        print(f"PORT {server.port}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
