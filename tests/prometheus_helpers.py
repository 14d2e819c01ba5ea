"""A real Prometheus server for the metrics tests (Debian's `prometheus` package, which CI installs): started on
loopback with a config of its own that scrapes the given targets every second, its data in a temporary folder, and
asked over its HTTP API. Skipped where the program is missing, unless REFED_REQUIRE_PROMETHEUS is set (CI)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Prometheus:
    """`prometheus` scraping `targets` (host:port) every second; `query(expr)` asks it a PromQL instant query."""

    def __init__(self, folder: Path, targets: list[str]):
        program = shutil.which("prometheus")
        if program is None:
            if os.environ.get("REFED_REQUIRE_PROMETHEUS"):
                pytest.fail("prometheus is not installed (Debian: apt-get install prometheus)")
            pytest.skip("prometheus is not installed (Debian: apt-get install prometheus)")
        folder.mkdir(parents=True, exist_ok=True)
        config = folder / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: refed\n    static_configs:\n"
            f"      - targets: {json.dumps(targets)}\n"
        )
        self.port = free_port()
        self.log = open(folder / "prometheus.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                program,
                f"--config.file={config}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def _wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited {self.process.returncode}: see {self.log.name}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("prometheus did not get ready within a minute")

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        """The result of PromQL `expr` now, or at time `at` (a vector: each element's metric labels and value)."""
        args = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode(args)
        with urllib.request.urlopen(url, timeout=10) as answer:
            body = json.loads(answer.read())
        assert body["status"] == "success", body
        return body["data"]["result"]

    def number(self, expr: str) -> float | None:
        """The one value of `expr` (None when it has none)."""
        found = self.query(expr)
        return float(found[0]["value"][1]) if found else None

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
