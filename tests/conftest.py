"""Shared fixtures: an isolated DSPy cache per test, no network, and loopback servers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "true"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from loopback_server import LoopbackServer, ServerConfig  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """The real-model tier first: it is the longest file, and with `pytest -n 2 --dist loadfile` (the README's
    command) one worker runs it from the start while the other runs every other file."""
    items.sort(key=lambda item: item.get_closest_marker("real_model") is None)


@pytest.fixture(autouse=True)
def _dspy_settings_restored():
    """DSPy's global LM and adapter as they were before the test: `mlflow.dspy.load_model` configures them from the
    logged model (a LoggedLM, refed's JSON adapter), and a later test in the same process (an xdist worker runs many
    files) would otherwise run under them."""
    import dspy

    before = {k: dspy.settings.config.get(k) for k in ("lm", "adapter")}
    yield
    if any(dspy.settings.config.get(k) is not v for k, v in before.items()):
        try:
            dspy.configure(**before)
        except RuntimeError:  # configured first by another thread: put the values back as they were
            dspy.settings.config.update(before)


@pytest.fixture(autouse=True)
def _mlflow_tracking_uri_restored():
    """MLflow's tracking URI as it was before the test: a test that points MLflow at its own store (which also sets
    MLFLOW_TRACKING_URI for every subprocess) would otherwise leave a later test in the same process writing there.
    MLflow is not imported for a test that did not import it."""

    def uri() -> str | None:
        mlflow = sys.modules.get("mlflow")
        return mlflow.get_tracking_uri() if mlflow is not None and mlflow.tracking.is_tracking_uri_set() else None

    before = uri()
    yield
    if uri() != before:
        sys.modules["mlflow"].set_tracking_uri(before)  # None unsets it, the variable with it


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Each test gets its own DSPy cache dir: DSPy's cache key ignores api_base."""
    import dspy

    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "true")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=False, disk_cache_dir=str(tmp_path / "dspy-cache"))
    yield


@pytest.fixture
def server_factory(tmp_path):
    """Start loopback servers with a given ServerConfig; all are stopped after the test."""
    started = []

    def start(**kwargs) -> LoopbackServer:
        kwargs.setdefault("log_path", str(tmp_path / f"server{len(started)}.jsonl"))
        # two providers never answer with the same words: with one seed, a judge server's rationale could be the
        # very text a teacher server wrote (a copy of the judge's input, which no real judge would answer)
        kwargs.setdefault("seed", len(started))
        srv = LoopbackServer(ServerConfig(**kwargs)).__enter__()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.__exit__(None, None, None)


@pytest.fixture
def run(server_factory, tmp_path):
    """A finished refed run dir of 30 samples (8 references, 2 instructions per feature) from a well-behaved teacher."""
    from refed_dspy.config import load_config
    from refed_dspy.synthesis.api import synthesize

    srv = server_factory()
    path = tmp_path / "run"
    synthesize(
        load_config(None, run_overrides(srv, path, 30, **{"seeds.limit": 8, "synthesis.instructions_per_feature": 2}))
    )
    return path


def start_refed_server(args: list[str], url_pattern: str) -> tuple:
    """Start `refed <args>` (a command that serves: view, serve-local) and read its URL from its first stdout line;
    returns (process, URL). The test fails with the command's stderr when it does not start."""
    import re
    import subprocess

    proc = subprocess.Popen(
        [sys.executable, "-m", "refed_dspy.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    line = proc.stdout.readline()
    found = re.search(url_pattern, line)
    if not found:
        proc.kill()
        pytest.fail(f"refed {args[0]} did not start: {line!r} {proc.stderr.read()[-2000:]!r}")
    return proc, found.group(1)


# The latency of a server whose 429s the window judges, as a provider's: at tens of milliseconds a busy client's count
# of its requests at the wire lags the server's by more than a request takes, and the trend that tells a cap from noise
# is lost in that lag (a cap missed, random refusals taken for one).
PROVIDER_LATENCY_S = 0.25


def run_overrides(server, run_dir, size: int, **extra) -> list[str]:
    """--set overrides pointing the teacher at a loopback server."""
    out = [
        f"teacher.api_base='{server.api_base}'",
        "teacher.api_key_env=''",
        f"run.dir='{run_dir}'",
        f"synthesis.size={size}",
        "run.progress=false",
        "teacher.num_retries=2",
    ]
    out += [f"{k}={v}" for k, v in extra.items()]
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` process on loopback (sqlite backend, proxied artifacts)."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # its job runner is not needed here
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'm.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(root / "server.log", "w"),  # noqa: SIM115
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
    yield url
    proc.terminate()
    proc.wait(timeout=20)


# references whose answers are long enough for Haiku 4.5's prompt cache (4,096 tokens and more): LIMA's longer ones
LONG_WORDS = [
    "explain",
    "the",
    "trade-offs",
    "of",
    "each",
    "design",
    "with",
    "a",
    "worked",
    "example",
    "and",
    "a",
    "short",
    "checklist",
    "for",
    "the",
    "reader",
]


def long_seeds(tmp_path, n: int = 4, words: int = 1400) -> str:
    """`n` references whose answers have `words` words (1,400: about 7,000 characters, 1,500 of Claude's tokens)."""
    path = tmp_path / "seeds.jsonl"
    rows = []
    for i in range(n):
        answer = " ".join(LONG_WORDS[(i + k) % len(LONG_WORDS)] for k in range(words))
        rows.append({"instruction": f"Question {i}: how would you design system number {i}?", "response": answer})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)
