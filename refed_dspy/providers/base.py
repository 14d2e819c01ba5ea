"""What refed knows of one provider: the `Provider` object, and the parts it is made of.

A provider is what a model string's prefix names (`anthropic/claude-haiku-4-5`: LiteLLM's provider `anthropic`). Its
object says which prefixes it answers for, which hosts are its own and which variables hold its keys, how its
`api_base` is written and where a chat call goes, the request format it speaks (`Wire`), the part of JSON Schema its
structured outputs take (`Dialect`), its batch API (`BatchAPI`), whether it caches prompt prefixes by itself
(`PrefixCache`) and its service tiers (`Tiers`). The package's other modules ask the object; none of them names a
provider.

Pure data and pure functions: nothing here reads the environment, imports LiteLLM or makes a request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from refed_dspy.providers.litellm_table import key_variables
from refed_dspy.providers.sampling import Sampling, usual_sampling

# the JSON Schema keywords that bound a value (our schemas carry each of them where a type says so)
BOUNDS = frozenset(
    {
        "minLength",
        "maxLength",
        "pattern",
        "format",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minItems",
        "maxItems",
        "uniqueItems",
    }
)


def provider_of(model: str) -> str:
    """The provider prefix of a DSPy/LiteLLM model string ('openai' when it has none, as LiteLLM assumes).

    Args:
        model: a DSPy/LiteLLM model string, such as 'anthropic/claude-haiku-4-5'.

    Returns:
        The part of `model` before its first '/', or 'openai' when it has none.
    """
    return model.split("/", 1)[0] if "/" in model else "openai"


@dataclass(frozen=True, eq=False)
class Wire:
    """A request format.

    Attributes:
        name: the format's name in messages ('OpenAI chat completions').
        family: the short name of who speaks it ('OpenAI': 'the server's OpenAI-compatible base').
        path: what a chat call appends to an `api_base` in its provider's form.
        reach: how a config reaches a server of this format, with `{name}` and `{host}` to fill in.
        usage: (prompt, completion, cached) tokens of a reply's `usage` object, counted as DSPy counts an online
            reply of this format.
        written: the prompt tokens a reply's `usage` says were written to the provider's prompt cache (None: the
            format reports none).
        cache_apart: a reply's input tokens leave out those read from and written to the prompt cache (Anthropic's;
            OpenAI's include the cached ones): refed's prompt tokens are all three.
        reasoning: the hidden reasoning tokens a reply's `usage` object counts apart (inside its completion tokens).
        rate_limits: the reply headers that state the provider's per-minute rate limits, each to what it limits
            ('requests', 'tokens', 'input-tokens' or 'output-tokens').
    """

    name: str
    family: str
    path: str
    reach: str
    usage: Callable[[Mapping[str, Any]], tuple[int, int, int]]
    written: Callable[[Mapping[str, Any]], int] | None = None
    cache_apart: bool = False
    reasoning: Callable[[Mapping[str, Any]], int] = lambda _usage: 0
    rate_limits: Mapping[str, str] = field(default_factory=dict)

    def tokens(self, body: Any) -> tuple[int, int, int]:
        """(prompt, completion, cached) tokens of a reply body of this format ((0, 0, 0) for one without usage).

        Args:
            body: a reply body of this format (anything but a dict counts as one without usage).

        Returns:
            The (prompt, completion, cached) token counts of its `usage` object.
        """
        return self.usage(_usage_of(body))

    def reasoning_tokens(self, body: Any) -> int:
        """The hidden reasoning tokens of a reply body of this format (inside its completion tokens; 0 unsaid).

        Args:
            body: a reply body of this format (anything but a dict counts as one without usage).

        Returns:
            The reasoning tokens its `usage` object counts, 0 where it counts none.
        """
        return self.reasoning(_usage_of(body))

    def cache_written(self, body: Any) -> int:
        """Prompt tokens of a reply body of this format written to the provider's prompt cache (0: none reported).

        Args:
            body: a reply body of this format (anything but a dict counts as one without usage).

        Returns:
            The prompt tokens written to the cache; 0 where the format or the reply reports none.
        """
        return self.written(_usage_of(body)) if self.written is not None else 0


def _usage_of(body: Any) -> Mapping[str, Any]:
    """A reply body's `usage` object ({} for one without)."""
    usage = body.get("usage") if isinstance(body, dict) else None
    return usage if isinstance(usage, Mapping) else {}


@dataclass(frozen=True, eq=False)
class Dialect:
    """The part of JSON Schema a provider's structured-output mode takes in `response_format`.

    Attributes:
        name: what `schema_dialect` says in a config.
        dropped: the bounds it does not take: they are moved into the property's description.
        kept: of those, values it takes all the same ({"minItems": (0, 1)}).
        why: why a model of its provider gets it, for the adapter choice's reason.
        shown: the provider puts the schema in front of the model (billed as input), so a prompt need not repeat the
            types and bounds it states.
        json_object: the provider takes `response_format = {"type": "json_object"}`.
        rank: where it is listed (lower first).
    """

    name: str
    dropped: frozenset[str] = frozenset()
    kept: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    why: str = ""
    shown: bool = False
    json_object: bool = True
    rank: int = 50

    def drops(self, key: str, value: Any) -> bool:
        """The schema keyword `key` with `value` goes into the description rather than the schema.

        Args:
            key: a JSON Schema keyword of a property (`maxLength`, `minimum`, ...).
            value: the keyword's value in the schema.

        Returns:
            True when the dialect does not take `key` (it is in `dropped`) and `value` is not one it keeps (`kept`).
        """
        return key in self.dropped and value not in self.kept.get(key, ())


FULL = Dialect("full", rank=0)  # grammar servers: every bound is enforced
MINIMAL = Dialect("minimal", BOUNDS, rank=99)  # a provider whose bounds are unknown: none are sent


@dataclass(frozen=True, eq=False)
class BatchAPI:
    """A provider's batch API, as the engine's batch clients (refed_dspy.launch.batch.api) need it.

    Attributes:
        name: how a run dir's batch store names the API a batch went to, and how messages name it.
        protocol: `files` (the requests go up as a JSONL file a batch is then made of) or `inline` (they go in the
            request that makes the batch).
        wire: the format of its requests and of the answers it holds.
        max_requests: requests per batch at most.
        max_bytes: bytes per batch at most.
        line_url: `files`: the URL each line of the file names.
        error_status: `inline`: the HTTP status an errored request's error type stands for.
    """

    name: str
    protocol: str
    wire: Wire
    max_requests: int
    max_bytes: int
    line_url: str = ""
    error_status: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class PrefixCache:
    """A provider that serves the prompt prefix a call shares with earlier ones from its cache without being asked:
    once the prefix is `min_tokens` long, in steps of `step` tokens."""

    min_tokens: int = 1024
    step: int = 128

    def cached(self, prefix_tokens: int) -> int:
        """Prompt tokens served from the cache for a call sharing `prefix_tokens` with an earlier one (pure).

        Args:
            prefix_tokens: the prompt tokens the call shares with an earlier one.

        Returns:
            0 below `min_tokens`, else `prefix_tokens` rounded down to a multiple of `step`.
        """
        return 0 if prefix_tokens < self.min_tokens else prefix_tokens // self.step * self.step


def content_text(content: Any) -> str:
    """The text of a system prompt or a chat message's content: a string, or its text blocks read one after another."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
    return ""


@dataclass(frozen=True)
class StablePrompt:
    """The parts of one chat prompt that repeat across calls, as its adapter laid them out
    (refed_dspy.adapters.layout): each end is (index of a message in `texts`, character offset in its text where the
    repeated part ends, None for the message's end); `texts` holds the text of each message up to the last end (the
    prompt the ends were found in: a request that differs there gets no mark), `key` names the repeated part (calls
    that share it share the key)."""

    texts: tuple[str, ...]
    ends: tuple[tuple[int, int | None], ...]
    key: str

    def prefix_chars(self, end: tuple[int, int | None]) -> int:
        """Characters of the prompt's text up to `end` (its messages before it, and its own part)."""
        index, offset = end
        own = len(self.texts[index]) if offset is None else offset
        return sum(len(t) for t in self.texts[:index]) + own


@dataclass(frozen=True)
class MarkedCache:
    """A provider that caches a prompt prefix only up to where a request marks it (Anthropic's `cache_control`), at
    most `max_marks` marks a request, and only a prefix of at least its model's minimum length (`minimum`); a read
    costs `read_factor` and a write `write_factor` of the input price (LiteLLM's map says so model by model, where it
    knows the model). What it does with a request is the provider's `cache_request`."""

    max_marks: int = 4
    min_tokens: Mapping[str, int] = field(default_factory=dict)  # model name prefix -> its minimum
    default_min_tokens: int = 1024
    read_factor: float = 0.1
    write_factor: float = 1.25

    def minimum(self, model: str) -> int:
        """The fewest prompt tokens `model` caches (the longest name prefix in `min_tokens` that `model` starts with)."""
        bare = model.rsplit("/", 1)[-1]
        found = [name for name in self.min_tokens if bare.startswith(name)]
        return self.min_tokens[max(found, key=len)] if found else self.default_min_tokens


@dataclass(frozen=True)
class Tiers:
    """A provider's service tiers beyond `default`, asked for per request (OpenAI's `service_tier`), and how it says
    that a tier has no capacity now (OpenAI's flex tier: HTTP 429 with the code `resource_unavailable`; such an answer
    is not billed). Which tiers a model offers is its price's to say (refed_dspy.providers.prices)."""

    names: tuple[str, ...] = ("flex", "priority")
    unasked: bool = False  # a project's settings may serve a request naming no tier on a dearer one (OpenAI's)
    unavailable_status: int = 429
    unavailable_code: str = "resource_unavailable"

    def unavailable(self, err: Any) -> bool:
        """`err` (an LM error) is the provider saying that the tier asked for has no capacity now: its status, with
        its code (as the client kept it, or in its words)."""
        if getattr(err, "status", None) != self.unavailable_status:
            return False
        code = str(getattr(err, "provider_code", "") or "").lower()
        words = str(err).lower()
        return code == self.unavailable_code or any(
            form in words for form in (self.unavailable_code, self.unavailable_code.replace("_", " "))
        )


@dataclass(frozen=True, eq=False)
class Provider:
    """What refed knows of one provider. A provider file makes one for each provider of its family and registers it
    (`PROVIDERS.register`); a subclass overrides the methods where its provider differs.

    Attributes:
        name: its registry name (`provider_named`), LiteLLM's name for it.
        title: how messages name it ('Azure OpenAI').
        prefixes: the model prefixes it answers for (`provider_for`); none for a server reached through another
            provider's prefix.
        rank: where it is listed (lower first).
        example: how the message for a model of no known provider shows it ('anthropic/<name>'); '' for none.
        hosts: the hosts of its own endpoints (a name starting with '.' is a domain: any host under it); the first
            plain name is where its calls go when no api_base is given. Its key goes to no other provider's.
        key_names: the variables its own documentation (or its SDK) reads its key from, beyond LiteLLM's table
            (`key_variables` has both): a key in one of them is its key.
        base_variables: the variables its clients (LiteLLM, its SDK) take an endpoint from when no api_base is
            given (OPENAI_BASE_URL), beyond DSPy's `<PREFIX>_API_BASE` and `<PREFIX>_BASE_URL`.
        client_keys: the variables LiteLLM's client of it reads its key from where LiteLLM's table names none
            (text-completion-openai/ and aiohttp_openai/ read OPENAI_API_KEY).
        keyless: a local server: it needs no key.
        wire: the request format of its chat calls, where refed knows it.
        default_base: its own `api_base`, where refed knows it.
        base_form: how its `api_base` is written, as LiteLLM takes it: `versioned` (with the version path,
            http://localhost:8000/v1) or `host` (http://localhost:8000).
        base_suffixes: trailing paths dropped from an api_base, so that either spelling works.
        native_path: what DSPy's own client (lm15) needs after an api_base in its form.
        api_base_hint: what an api_base of it names, where it has no endpoint of its own.
        dialect: the part of JSON Schema its structured outputs take.
        grammar: its servers compile the whole schema into a decoding grammar: every bound is enforced.
        schema_table: LiteLLM's model table says, model by model, whether it enforces a response schema.
        batch: its batch API, if refed can use one.
        prefix_cache: how it caches prompt prefixes by itself, if it does.
        marked_cache: how it caches the prompt prefixes a request marks, if it does (`cache_request` marks them).
        cache_key: the request field that sends calls sharing a prompt prefix to the same cache (OpenAI's
            `prompt_cache_key`), if it takes one.
        tiers: the service tiers a request may ask for beyond `default`, if it has any.
        thoughts_apart: a reply's output tokens, as its own API counts them, leave out its hidden reasoning tokens
            (Gemini's, xAI's), which are billed as output: refed's completion tokens are both.
    """

    name: str
    title: str = ""
    prefixes: tuple[str, ...] = ()
    rank: int = 100
    example: str = ""
    hosts: tuple[str, ...] = ()
    key_names: tuple[str, ...] = ()
    base_variables: tuple[str, ...] = ()
    client_keys: tuple[str, ...] = ()
    keyless: bool = False
    wire: Wire | None = None
    default_base: str | None = None
    base_form: str = "versioned"
    base_suffixes: tuple[str, ...] = ()
    native_path: str = ""
    api_base_hint: str = ""
    dialect: Dialect = MINIMAL
    grammar: bool = False
    schema_table: bool = False
    batch: BatchAPI | None = None
    prefix_cache: PrefixCache | None = None
    marked_cache: MarkedCache | None = None
    cache_key: str | None = None
    tiers: Tiers | None = None
    thoughts_apart: bool = False

    def __post_init__(self) -> None:
        if not self.title:
            object.__setattr__(self, "title", self.name)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    @property
    def key_variables(self) -> tuple[str, ...]:
        """The variables LiteLLM reads its key from, prefix by prefix (refed_dspy.providers.litellm_table), then those
        its own documentation names (`key_names`)."""
        names = (name for prefix in (self.name, *self.prefixes) for name in key_variables(prefix))
        return tuple(dict.fromkeys((*names, *self.key_names)))

    @property
    def endpoint_variables(self) -> tuple[str, ...]:
        """The variables a client of its models takes an endpoint from when a config gives no api_base: its own
        (`base_variables`), then DSPy's for each prefix (`<PREFIX>_API_BASE`, `<PREFIX>_BASE_URL`)."""
        derived = (f"{p.upper()}{end}" for p in (self.name, *self.prefixes) for end in ("_API_BASE", "_BASE_URL"))
        return tuple(dict.fromkeys((*self.base_variables, *derived)))

    def host_form(self, api_base: str) -> str:
        """`api_base` as LiteLLM takes it for this provider: without a trailing slash, and without a trailing path of
        `base_suffixes`.

        Args:
            api_base: a base URL as a config gives it.

        Returns:
            `api_base` stripped of surrounding spaces, a trailing slash and a trailing path of `base_suffixes`.
        """
        base = api_base.strip().rstrip("/")
        for suffix in self.base_suffixes:
            if base.endswith(suffix):
                return base[: -len(suffix)]
        return base

    def native_base(self, api_base: str) -> str:
        """The base DSPy's own client (lm15) is given for `api_base`.

        Args:
            api_base: a base URL as a config gives it.

        Returns:
            `api_base` in LiteLLM's form (`host_form`) followed by `native_path`.
        """
        return self.host_form(api_base) + self.native_path

    def call_url(self, model: str, api_base: str | None) -> str:
        """The URL a chat call of `model` goes to with `api_base` (unset: the provider's own); where refed does not
        know the format or the default endpoint, `api_base` itself (or '<prefix>'s default endpoint').

        Args:
            model: the DSPy/LiteLLM model string of the call.
            api_base: the config's base URL; None for the provider's own (`default_base`).

        Returns:
            The URL of the chat call, or where it is unknown `api_base` or a phrase naming the default endpoint.
        """
        base = api_base or self.default_base
        if self.wire is None or base is None:
            return api_base or f"{provider_of(model)}'s default endpoint"
        return self.host_form(base) + self.wire.path

    def schema_dialect(self, model: str, api_base: str | None) -> tuple[Dialect, str]:
        """The schema dialect of `model` at `api_base`, and why.

        Args:
            model: the DSPy/LiteLLM model string.
            api_base: the config's base URL (None: the provider's own); a subclass may tell servers apart by it.

        Returns:
            (dialect, reason): FULL for a grammar server, else the provider's own dialect, else MINIMAL.
        """
        prefix = provider_of(model)
        if self.grammar:
            return FULL, f"{prefix} compiles the whole schema into a grammar"
        if self.dialect is not MINIMAL:
            return self.dialect, self.dialect.why
        return MINIMAL, f"provider '{prefix}': which bounds it takes is unknown, so none are sent"

    @property
    def caches_on_request(self) -> bool:
        """A request can ask it to cache (`cache_request` changes a request's body)."""
        return self.marked_cache is not None or self.cache_key is not None

    def cache_request(self, body: dict[str, Any], stable: StablePrompt | None) -> dict[str, Any]:
        """The body of a chat request of its wire format, asking it to cache the repeated part of the prompt
        (`stable`; None: nothing known to repeat): with the key of that part in `cache_key`. `body` is not changed.

        Args:
            body: the body of a chat request of the provider's wire format.
            stable: the parts of the prompt that repeat across calls, or None when none are known.

        Returns:
            A new body asking the provider to cache the repeated part, or `body` itself where there is nothing to ask.
        """
        if self.cache_key is None or stable is None or not stable.key:
            return body
        return {**body, self.cache_key: stable.key}

    def sampling(self, model: str) -> Sampling:
        """The settings `model` takes where a config is silent (temperature, output limit) and whether it reasons
        (refed_dspy.providers.sampling): the usual ones, with what LiteLLM's table says of it.

        Args:
            model: the DSPy/LiteLLM model string.

        Returns:
            The model's default sampling settings.
        """
        return usual_sampling(model)

    def batch_base(self, api_base: str | None) -> str:
        """The base URL of its batch API, for the config's `api_base` (None: its own endpoint).

        Args:
            api_base: the config's base URL, or None for the provider's own (`default_base`).

        Returns:
            The base URL batch requests go to.
        """
        return self.native_base(api_base or self.default_base or "")

    def batch_headers(self, key: str | None) -> dict[str, str]:
        """The headers that carry `key` to its batch API.

        Args:
            key: the API key, or None where there is none.

        Returns:
            The HTTP headers, by name (here a bearer `Authorization` header).
        """
        return {"Authorization": f"Bearer {key or 'unused'}"}

    def batch_query(self, api_version: str | None) -> str:
        """The query string each batch API request carries ('' for none).

        Args:
            api_version: the config's API version, or None; this base class does not use it.

        Returns:
            The query string without its leading '?' ('' here).
        """
        return ""

    def batch_body(self, model: str) -> dict[str, Any]:
        """What to change in a role's section for the body of a batch request to be built as the batch API takes it
        ({}: as for an online call).

        Args:
            model: the section's DSPy/LiteLLM model string.

        Returns:
            The section's fields to change, by name ({} here).
        """
        return {}
