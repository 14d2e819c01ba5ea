"""A run's metrics for the tools that watch services: a Prometheus scrape endpoint and an OTLP exporter (`[metrics]`).

Off unless the run's config turns them on: `metrics.prometheus_port` serves them on http://127.0.0.1:PORT/metrics,
`metrics.otlp = true` exports them over OTLP/HTTP to the collector the standard `OTEL_EXPORTER_OTLP_*` variables
configure (they configure, never enable: they are often set for other tools), every `OTEL_METRIC_EXPORT_INTERVAL`
milliseconds (60,000 by default) and once at the end. Both need the `[metrics]` extra; nothing of it is imported
unless a run turns one on.

The figures are the run's Watch's (refed_dspy.engine.watch): kept in plain Python as the run works, and turned into
OpenTelemetry's data model (`metrics_data`) only when a scrape or an export reads them, so that recording costs about
a microsecond a call where the SDK's own instruments cost about 10 a measurement. The names are the GenAI conventions'
and refed's (refed_dspy.engine.figures.INSTRUMENTS), as the OpenTelemetry Prometheus exporter writes them:
`gen_ai_client_operation_duration_seconds`, `gen_ai_client_token_usage`, `refed_cost_usd_total`, ... Every label
value is masked (refed_dspy.secrets) before it leaves the process.

The endpoint answers only to a Host header that names this machine's loopback interface (403 to any other: a page
that reached it under another name, DNS rebinding, must not read it), as the viewer does.

The port is bound when the run is launched, before any call: a port in use is one line, exit 2. On Ray the figures are
the driver's, which records what its workers' calls report: one scrape target for the cluster. The endpoint stays up
`metrics.linger_s` after the run's last call, so that a scraper reads the final values (a stop signal ends the wait).
"""

from __future__ import annotations

import errno
import logging
import socketserver
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from refed_dspy.config import MetricsConfig
from refed_dspy.engine.figures import INSTRUMENTS, Series
from refed_dspy.errors import ConfigError
from refed_dspy.providers.keys import loopback_host
from refed_dspy.runtime.stops import stopping
from refed_dspy.secrets import mask

log = logging.getLogger(__name__)
HOST = "127.0.0.1"
SCOPE = "refed_dspy"
EXTRA = "pip install 'refed-dspy[metrics]'"


def metrics_data(series: list[Series], started_ns: int, resource: dict[str, str] | None = None) -> Any:
    """`series` as OpenTelemetry MetricsData: counters as cumulative monotonic sums, gauges as gauges, histograms as
    cumulative explicit-bucket histograms, each since `started_ns`; label values masked."""
    from opentelemetry.sdk.metrics.export import (
        AggregationTemporality,
        Gauge,
        Histogram,
        HistogramDataPoint,
        Metric,
        MetricsData,
        NumberDataPoint,
        ResourceMetrics,
        ScopeMetrics,
        Sum,
    )
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    now, cumulative = time.time_ns(), AggregationTemporality.CUMULATIVE
    by_name: dict[str, list[Series]] = {}
    for one in series:
        by_name.setdefault(one.name, []).append(one)
    metrics = []
    for name, rows in by_name.items():
        kind = INSTRUMENTS[name]
        if kind.kind == "histogram":
            points = [
                HistogramDataPoint(
                    _masked(r.attributes),
                    started_ns,
                    now,
                    r.count,
                    r.sum,
                    list(r.buckets),
                    list(kind.bounds),
                    r.min if r.min is not None else 0.0,
                    r.max if r.max is not None else 0.0,
                )
                for r in rows
            ]
            data: Any = Histogram(points, cumulative)
        else:
            points = [NumberDataPoint(_masked(r.attributes), started_ns, now, r.value) for r in rows]
            data = Sum(points, cumulative, True) if kind.kind == "counter" else Gauge(points)
        metrics.append(Metric(name, kind.description, kind.unit, data))
    scope = ScopeMetrics(InstrumentationScope(SCOPE), metrics, "")
    attributes = {"service.name": "refed", **(resource or {})}
    return MetricsData([ResourceMetrics(Resource.create(_masked(attributes)), [scope], "")])


def _masked(attributes: dict[str, str]) -> dict[str, str]:
    return {k: mask(v) for k, v in attributes.items()}


def _readers() -> tuple[type, type]:
    """(the Prometheus reader, the periodic OTLP reader) fed by a function that makes MetricsData instead of the SDK's
    instruments: the readers' own `collect` is what they call, at each scrape and each export."""
    try:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    except ImportError:
        raise ConfigError(f"[metrics] needs the metrics extra: {EXTRA}") from None

    class FedPrometheusReader(PrometheusMetricReader):
        def __init__(self, data: Callable[[], Any], registry: Any):
            super().__init__(registry=registry)
            self.data = data

        def collect(self, timeout_millis: float = 10_000) -> None:
            self._receive_metrics(self.data())

    class FedExportingReader(PeriodicExportingMetricReader):
        def __init__(self, data: Callable[[], Any], exporter: Any):
            self.data = data  # before the reader's thread first collects
            super().__init__(exporter)

        def collect(self, timeout_millis: float = 10_000) -> None:
            self._receive_metrics(self.data(), timeout_millis=timeout_millis)

    return FedPrometheusReader, FedExportingReader


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a scrape in progress does not hold the run's end


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the signature is the handler's
        """Each scrape is not worth a line on stderr."""


def _loopback_only(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """`app` behind the Host check: 403 to a request whose Host header names anything but the loopback interface."""

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not loopback_host(environ.get("HTTP_HOST")):
            start_response("403 Forbidden", [("Content-Type", "text/plain; charset=utf-8")])
            return [f"refused: the metrics answer only to {HOST} and localhost\n".encode()]
        return app(environ, start_response)

    return guarded


class Endpoint:
    """The run's metrics going out (see the module docstring): `follow(source)` once the run's Watch exists,
    `close(linger)` once the run has ended."""

    def __init__(self, settings: MetricsConfig, role: str):
        self.settings = settings
        self.source: Callable[[], list[Series]] | None = None
        self.resource = {"refed.role": role}  # what its target says of itself (Prometheus: target_info)
        self.started_ns = time.time_ns()
        self.port: int | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._otlp: Any = None
        prometheus_reader, exporting_reader = _readers()
        if settings.prometheus_port is not None:
            self._serve(prometheus_reader, settings.prometheus_port)
        if settings.otlp:
            try:
                from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
            except ImportError:
                self.close(linger=False)
                raise ConfigError(f"metrics.otlp needs the metrics extra: {EXTRA}") from None
            self._otlp = exporting_reader(self.data, OTLPMetricExporter())

    def _serve(self, reader_class: type, port: int) -> None:
        """Serve the figures on HOST:`port` (0: any free port); ConfigError, one line, when the port is in use."""
        from prometheus_client import CollectorRegistry, make_wsgi_app

        registry = CollectorRegistry()
        self._reader = reader_class(self.data, registry)
        try:
            self._server = make_server(HOST, port, _loopback_only(make_wsgi_app(registry)), _Server, _Quiet)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"metrics.prometheus_port = {port}: port {port} on {HOST} is in use by another program; stop it, "
                    "or choose another port (0: any free port)"
                ) from None
            raise ConfigError(f"metrics.prometheus_port = {port}: cannot serve on {HOST}:{port}: {err}") from None
        self._thread = threading.Thread(target=self._server.serve_forever, name="refed-metrics", daemon=True)
        self._thread.start()
        self.port = self._server.server_port
        log.info("metrics: http://%s:%d/metrics (Prometheus)", HOST, self.port)

    def follow(self, source: Callable[[], list[Series]]) -> None:
        """Serve and export what `source()` gives (a Watch's `snapshot`)."""
        self.source = source

    def data(self) -> Any:
        """The figures now, as MetricsData (empty before the run's Watch exists)."""
        return metrics_data(self.source() if self.source is not None else [], self.started_ns, self.resource)

    def close(self, linger: bool = True) -> None:
        """With `linger`: keep serving `metrics.linger_s` (a stop signal or Ctrl-C ends the wait), then export a last
        time over OTLP and stop the endpoint."""
        try:
            if linger and self._server is not None:
                _wait(self.settings.linger_s)
        finally:
            if self._otlp is not None:
                self._otlp.shutdown()  # its last export: the final values
                self._otlp = None
            if self._server is not None:
                self._server.shutdown()
                self._server.server_close()
                self._server = None


def _wait(seconds: float) -> None:
    """Wait `seconds`, or until a stop signal arrives (Ctrl-C raises KeyboardInterrupt out of it)."""
    deadline = time.monotonic() + seconds
    while not stopping() and (left := deadline - time.monotonic()) > 0:
        time.sleep(min(0.2, left))


def open_endpoint(settings: MetricsConfig, role: str) -> Endpoint | None:
    """The metrics endpoint and exporter of a stage of `role` as `settings` ask (None when they ask for neither), the
    port bound now: ConfigError (exit 2) when it is in use or the extra is missing."""
    if settings.prometheus_port is None and not settings.otlp:
        return None
    return Endpoint(settings, role)
