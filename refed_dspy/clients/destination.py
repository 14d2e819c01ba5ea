"""The destination check: every HTTP request an LM call or a Hub request of this process sends is checked, as it
leaves, for the keys it carries and the host it is addressed to.

A config's strings are one entrance; a key also leaves through an endpoint the environment supplies
(`OPENAI_BASE_URL`, which LiteLLM reads when no api_base is given), through a host the resolver reads otherwise than
it is written (a soft hyphen, `ª`, full-width letters: IDNA/UTS-46 folds them away), through a user's own LM, a batch
client, a Ray worker, or a proxy (`HTTP_PROXY`: the request is addressed to its host all the same). So the check sits
where the bytes leave, below every caller.

Every LM a run holds, built (refed_dspy.clients.lm.build_lm) or handed in (`bounded`: a user's dspy.LM, a logged
program's, a teleprompter's copy), sends through engines of refed's wherever DSPy's own client (lm15) serves its model
and carries its settings, and their transport checks each request (`CheckedTransport`, under whatever rewrites a
request on its way). An LM whose settings lm15 cannot carry (`thinking`) keeps DSPy's engine, which sends its calls
through LiteLLM (checked below); one of a provider a user declared to lm15 (`dspy.lm15.register_provider`) keeps DSPy's
own client, checked as it is handed in, not as it sends. refed's batch clients check each of their requests in their
httpx client's request hook (`check_httpx_request`). lm15 itself is left as it is: a request a user's own dspy.LM sends
outside refed's calls is theirs. What does not yet pass a client of refed's (a model DSPy serves through LiteLLM, a
hosted embedder, the Hub) is checked in the clients they send with, httpx and httpx2 (LiteLLM, the openai SDK, the
Hub) and aiohttp (LiteLLM's async transport, its `aiohttp_openai/` models), while refed's work is under way
(`checking`: each call of an LM behind the boundary; each piece of a run's work and an optimization's or experiment's
calls, `lm_routing.routing`, where an adapter asks LiteLLM a model's capabilities before the call; a hosted embedder's
request; a Hub download or push, a model loaded by its Hub id included; each call of a logged program's LM where it is
loaded, through DSPy's callback hook, `CHECKING_CALLS`), and only then: when the last one returns,
their methods are their own again, so a request the user's own code sends outside refed's work is theirs, unread (a
request another thread sends meanwhile is checked too). requests is left as it is: no LM call or
Hub request goes through it (MLflow's requests do, with a token no provider owns; LiteLLM's token fetch for Vertex AI,
to Google's sign-in host; and its Databricks OAuth fetch, which posts $DATABRICKS_CLIENT_SECRET to the model's own
endpoint whenever it and its client id are set: checked before any call, as a key is, `providers.keys.SENT_WHEN_SET`).
A user's own BaseLM sends with its own client: it is checked as it is handed in (`check_lm_key`, by the model, endpoint
and key it carries), and a request it makes with requests or urllib is its own.

For each request: the held secrets (refed_dspy.secrets) found in its headers, its URL or its body (a key posted for a
token, as LiteLLM posts watsonx's to its sign-in host); for each, the providers whose
variables hold it (`sources_of`, `key_provider`); for each of those, the one decision on its URL
(refed_dspy.providers.keys.key_destination). A refusal raises KeyProviderError before a byte of the request is
sent (the run stops, exit 2); a warning is one line, once per variable and host. A secret no provider owns (a
variable of one's own, an inline key, MLflow's token) goes anywhere: its owner is the user.

The same decision is said early for an LM object (a user's dspy.LM, a logged program's LM), before any call:
`check_lm_key`, as refed_dspy.providers.keys says it for a config section, for the endpoint the LM's client was given
(`endpoint_of`; the launch, the ledger's routing and a run's provenance read it too).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NoReturn

from dspy.utils.callback import BaseCallback

from refed_dspy.clients.tries import causes
from refed_dspy.errors import KeyProviderError
from refed_dspy.providers.keys import (
    Destination,
    host_of,
    key_destination,
    key_provider,
    key_route,
    provider_variable_set,
    sent_by_itself,
    warn_once,
    warn_route,
)
from refed_dspy.providers.litellm_table import SIGNED_WITH
from refed_dspy.secrets import find_held, held_in_body, hold, is_credential_name, is_secret_value, sources_of

log = logging.getLogger(__name__)
_lock = threading.Lock()
_under_way = 0  # the refed calls and requests under way that the HTTP clients' check covers (`checking`)
# (class, method) -> (its own, whether defined on the class itself, the wrapper put in front of it)
_replaced: dict[tuple[Any, str], tuple[Any, bool, Any]] = {}
_refusals: dict[str, KeyProviderError] = {}  # the refusals said in this process, by their text


def _owners(value: str) -> list[tuple[str, str]]:
    """(variable, provider) for each variable holding `value` that is a provider's key."""
    found = ((name, key_provider(name)) for name in sorted(sources_of(value)))
    return [(name, owner) for name, owner in found if owner is not None]


def refusal_text(env: str, owner: str, found: Destination) -> str:
    """The one line a refused request ends the command with."""
    return (
        f"refused to send {_named(env)} ({owner}'s key) to {found.host} ({found.why}); no request carried it: point "
        f"api_base (or the endpoint variable the client reads, such as OPENAI_BASE_URL) at {owner}'s endpoint, or use "
        "the key of the provider you mean to call"
    )


def _named(source: str) -> str:
    """How a line names where a key was read from: `$VARIABLE`, or a file said in words."""
    return f"${source}" if source.isidentifier() else source


def check_request(url: str, header_values: Iterable[str], body: bytes = b"") -> None:
    """KeyProviderError when a held key in this request (its headers, its URL, its body) would reach a host it must
    not; a warning line (once) where it may go but should be looked at. Quick when the request carries no held key."""
    texts = [text.decode("latin-1") if isinstance(text, bytes) else str(text) for text in header_values]
    for value in find_held(url, *texts) | held_in_body(body):
        for env, owner in _owners(value):
            found = key_destination(owner, url)
            if env in SIGNED_WITH:  # a secret its client signs with is sent to no host at all, its provider's neither
                _refuse(
                    f"refused to send ${env} to {host_of(url)}: it is a secret {owner}'s client signs requests with, "
                    "never sent; no request carried it: give an API key of the provider in its own variable (or none)"
                )
            if found.verdict == "refuse":
                _refuse(refusal_text(env, owner, found))
            if found.verdict == "warn":
                warn_once(env, owner, found)


def _refuse(text: str) -> NoReturn:
    """Raise the refusal said in `text`, the same object each time it is said (a client that wraps it keeps it)."""
    with _lock:
        refusal = _refusals.setdefault(text, KeyProviderError(text))
    raise refusal


def refusal_in(err: BaseException) -> KeyProviderError | None:
    """The refusal of `check_request` that `err` carries: the clients wrap what a transport raises in errors of their
    own (DSPy's LMUnexpectedError, LiteLLM's InternalServerError, which reads as retryable), keeping it as their
    cause or only in their words; None when `err` is no refusal."""
    found = next((one for one in causes(err) if isinstance(one, KeyProviderError)), None)
    if found is not None or not _refusals:
        return found
    words = str(err)
    with _lock:
        return next((refusal for text, refusal in _refusals.items() if text in words), None)


class CheckedTransport:
    """An lm15 HTTP transport (sync or async, as `inner` is) that checks each request (`check_request`) as it goes to
    `inner`, the transport that sends it: below whatever rewrites a request on its way (an endpoint spread, a prompt
    cache), so the URL checked is the one the bytes go to, whatever proxy carries them."""

    def __init__(self, inner: Any):
        self.inner = inner

    def stream(self, request: Any) -> Any:
        check_request(*_lm15(self.inner, request))
        return self.inner.stream(request)

    def copy(self) -> CheckedTransport:
        """A fresh transport of the same kind (lm15 asks for one when the original was closed)."""
        return CheckedTransport(self.inner.copy())

    def __getattr__(self, name: str) -> Any:  # what else lm15 asks of its transport (close, aclose, max_connections)
        if name == "inner":  # not set yet (a copy being made): no lookup through itself
            raise AttributeError(name)
        return getattr(self.inner, name)


async def check_httpx_request(request: Any) -> None:
    """An httpx AsyncClient's request event hook (`event_hooks={"request": [check_httpx_request]}`): each request
    checked as it is sent, after its auth is set, a redirect's too."""
    check_request(*_httpx(None, request))


# ---- the clients ---------------------------------------------------------------------------------------------------


Sent = tuple[str, Iterable[str], bytes]  # what check_request reads of a request: its URL, header values and body


def _wrap(cls: Any, name: str, read: Callable[..., Sent], is_async: bool) -> None:
    """Put the check in front of `cls.name`, reading (url, header values, body) from its arguments with `read`. A
    wrapper left in place (another library wrapped it after us) checks only while `checking` blocks are under way."""
    original = getattr(cls, name, None)
    if original is None or (cls, name) in _replaced:  # ours is in place (idle, under another library's wrapper)
        return
    if is_async:

        @functools.wraps(original)
        async def checked_async(*args: Any, **kwargs: Any) -> Any:
            if _under_way:
                check_request(*read(*args, **kwargs))
            return await original(*args, **kwargs)

        wrapper: Any = checked_async
    else:

        @functools.wraps(original)
        def checked(*args: Any, **kwargs: Any) -> Any:
            if _under_way:
                check_request(*read(*args, **kwargs))
            return original(*args, **kwargs)

        wrapper = checked
    _replaced[(cls, name)] = (original, name in vars(cls), wrapper)
    setattr(cls, name, wrapper)


def _unwrap() -> None:
    """Each method `_wrap` replaced is its own again, unless something has wrapped it since (then ours stays, idle:
    known by identity, as a wrapper of ours copied by `functools.wraps` carries our attributes)."""
    for (cls, name), (original, own, wrapper) in list(_replaced.items()):
        if vars(cls).get(name) is not wrapper:
            continue
        if own:
            setattr(cls, name, original)
        else:
            delattr(cls, name)
        del _replaced[(cls, name)]


def _lm15(_transport: Any, request: Any, *_: Any, **__: Any) -> Sent:
    return request.url, [value for _, value in request.headers], request.body or b""


def _httpx(_client: Any, request: Any, *_: Any, **__: Any) -> Sent:
    try:
        body = request.content
    except RuntimeError:  # httpx's RequestNotRead: a body streamed as it is sent (a file upload), not read here
        body = b""
    return str(request.url), [value for _, value in request.headers.multi_items()], body


def _aiohttp(request: Any, *_: Any, **__: Any) -> Sent:
    from aiohttp.payload import BytesPayload  # imported with the class this reads

    body = request.body.decode("latin-1").encode("latin-1") if isinstance(request.body, BytesPayload) else b""
    return str(request.url), [str(value) for value in request.headers.values()], body


def _install_httpx(module_name: str) -> None:
    module = __import__(module_name)
    _wrap(module.Client, "_send_single_request", _httpx, is_async=False)  # each request, after auth and redirects
    _wrap(module.AsyncClient, "_send_single_request", _httpx, is_async=True)


def _install_aiohttp() -> None:
    from aiohttp import client_reqrep

    _wrap(client_reqrep.ClientRequest, "send", _aiohttp, is_async=True)  # after its headers and auth are set


_CLIENTS: dict[str, Callable[[], None]] = {
    "httpx": lambda: _install_httpx("httpx"),
    "httpx2": lambda: _install_httpx("httpx2"),
    "aiohttp": _install_aiohttp,
}


@contextlib.contextmanager
def checking() -> Iterator[None]:
    """For the block (a refed LM's call, a hosted embedder's request, a Hub request), the HTTP clients of the list
    above that are installed here check each request this process sends; when the last such block ends, their methods
    are their own again: a request the user's own code sends outside refed's calls is theirs, unread."""
    check_begins()
    try:
        yield
    finally:
        check_ends()


def check_begins() -> None:
    """A block of `checking` begins (the check put in the clients when it is the only one under way)."""
    global _under_way
    with _lock:
        if _under_way == 0:
            for put in _CLIENTS.values():
                with contextlib.suppress(ImportError):  # a client this environment does not have sends nothing
                    put()
        _under_way += 1


def check_ends() -> None:
    """A block of `checking` ends (the clients' methods their own again when it was the last one under way)."""
    global _under_way
    with _lock:
        _under_way -= 1
        if _under_way == 0:
            _unwrap()


class CheckingCalls(BaseCallback):
    """DSPy's public callback hook for an LM refed hands out rather than holds (a logged program's LM, called where the
    program is loaded): each of its calls is a `checking` block, so what it sends through LiteLLM is checked where it
    takes the key. One object (`CHECKING_CALLS`): a copy or a pickle of the LM holds the same."""

    def __init__(self) -> None:
        self._open: set[str] = set()  # the calls it began: an end without its start (a start that raised) ends none

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        check_begins()
        with _lock:
            self._open.add(call_id)

    def on_lm_end(self, call_id: str, outputs: Any, exception: Exception | None = None) -> None:
        with _lock:
            began = call_id in self._open
            self._open.discard(call_id)
        if began:
            check_ends()

    def __deepcopy__(self, memo: dict) -> CheckingCalls:
        return self

    def __reduce__(self) -> str:
        return "CHECKING_CALLS"  # pickled by reference: the module's one object


CHECKING_CALLS = CheckingCalls()


def check_lm_key(lm: Any, role: str, env: str | None = None) -> None:
    """The check of providers.keys.check_key_goes_to_its_provider for an LM object (a user's dspy.LM, a logged
    program's LM): its key's variable `env`, else found by value (`key_env_of`; with no inline key, the variable its
    provider's client reads, when set), its endpoint its api_base (or the provider's own). KeyProviderError when
    refused; its key is held for masking either way. An LM that carries no key, or one held in no variable, is not
    placed and passes."""
    key = key_of(lm)
    hold(key)
    model = getattr(lm, "model", None)
    if not isinstance(model, str) or not model:
        return
    if env is None:
        env = key_env_of(lm) if isinstance(key, str) and key else provider_variable_set(model, os.environ)
    if env:  # else nobody's key (none, or one held in no variable): not placed, but what its client sends by itself is
        hold(key, env)
    base = endpoint_of(lm)
    route = key_route(model, env or "", [base] if isinstance(base, str) and base else [], os.environ)
    refusal = route.refusal
    if refusal is None:
        warn_route(route, role)
        return
    if refusal.env != route.env:  # not its key: a credential its client sends by itself
        raise sent_by_itself(refusal, f"{role}: the LM '{model}'", f", or give it an api_base of {refusal.owner}'s")
    raise KeyProviderError(
        f"{role}: the LM '{model}' sends ${refusal.env} ({refusal.owner}'s key) to {refusal.where} ({refusal.why}): "
        f"refused before any call; give it {refusal.endpoint_owner}'s key "
        f'(api_key=os.environ["{route.theirs_variable}"]) or an api_base of {refusal.owner}\'s'
    )


def key_env_of(lm: Any) -> str | None:
    """Where the key of an LM object comes from, as a config's api_key_env says it: the environment variable whose
    value it holds; "" for a placeholder (a server that needs no key); None when unknown (no inline key: the
    provider's variable; an inline secret held in no variable)."""
    key = key_of(lm)
    if not isinstance(key, str) or not key:
        return None
    for name, value in os.environ.items():
        if value == key and is_credential_name(name):
            return name
    return "" if not is_secret_value(key) else None  # a placeholder ("EMPTY", "unused"): a server that checks none


def told_of(lm: Any) -> dict[str, Any]:
    """What `lm`'s client was told: its `kwargs`, with what its own engines were told to reach its endpoint where it has
    engines of its own (`client_reach`: api_base, timeout; never the key)."""
    return {**(getattr(lm, "kwargs", None) or {}), **(getattr(lm, "client_reach", None) or {})}


def key_of(lm: Any) -> Any:
    """The key `lm`'s requests carry, as its client was given it: its `api_key`, else, for an LM that carries engines of
    its own, the key those engines were configured with; None: the variable its provider's client reads."""
    key = (getattr(lm, "kwargs", None) or {}).get("api_key")
    if key:
        return key
    config = getattr(getattr(lm, "engine", None), "config", None)
    return next(iter((getattr(config, "api_keys", None) or {}).values()), None)


def endpoint_of(lm: Any) -> str | None:
    """The endpoint `lm`'s requests are addressed to, as its client was given it: its `api_base` (or `base_url`), else,
    for an LM that carries engines of its own (build_lm's, which DSPy refuses client settings beside), the base URL
    those engines were configured with; None: the provider's own endpoint."""
    kwargs = getattr(lm, "kwargs", None) or {}
    base = kwargs.get("api_base") or kwargs.get("base_url")
    if base:
        return base
    config = getattr(getattr(lm, "engine", None), "config", None)
    return next(iter((getattr(config, "base_urls", None) or {}).values()), None)
