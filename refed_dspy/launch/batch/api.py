"""The clients of the providers' batch APIs, one per protocol: `FileBatches` (the requests go up as a JSONL file a
batch is then made of: OpenAI's Files + Batches) and `InlineBatches` (they go in the request that makes the batch:
Message Batches). Which provider has which, with its limits, base URL and headers, is the provider's to say
(refed_dspy.providers: `Provider.batch`), and so is which provider takes a section's batches
(refed_dspy.providers.registry.batch_provider).

Each client knows its protocol's endpoints, status names and result shapes, and turns them into one vocabulary: a
batch's `status` (open while the provider works on it, else completed | expired | cancelled | failed) and per-request
`StoredResult`s (an HTTP status and body, or `lost`: not answered). The URL and auth headers are those of the online
call the request was built for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from refed_dspy.clients.destination import check_httpx_request
from refed_dspy.launch.batch.store import StoredResult
from refed_dspy.providers.base import BatchAPI
from refed_dspy.providers.registry import batch_provider

_FILES_FINAL = {"completed": "completed", "expired": "expired", "cancelled": "cancelled", "failed": "failed"}


class BatchAPIError(Exception):
    """The provider's batch endpoint answered with an error (or could not be reached)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status == 429 or self.status >= 500


@dataclass
class BatchView:
    """A provider batch as last seen."""

    id: str
    status: str  # the provider's own word
    final: str | None  # completed | expired | cancelled | failed, once the provider is done with it
    counts: dict[str, int]
    created_at: float | None = None
    raw: dict[str, Any] | None = None


class _Client:
    uploads = False  # the requests go up as a file before the batch is made

    def __init__(self, spec: BatchAPI, base_url: str, headers: dict[str, str], query: str = "", timeout: float = 120.0):
        self.spec = spec
        self.api = spec.name  # how the batch store and messages name the API
        self.max_requests = spec.max_requests
        self.max_bytes = spec.max_bytes
        self.base = base_url.rstrip("/")
        self.headers = headers
        self.query = query  # where the provider wants one: ?api-version=...
        self.http = httpx.AsyncClient(timeout=timeout, event_hooks={"request": [check_httpx_request]})  # keys checked

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base}{path}" + (f"{sep}{self.query}" if self.query else "")

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            resp = await self.http.request(method, self.url(path), headers=self.headers, **kwargs)
        except httpx.HTTPError as err:
            raise BatchAPIError(f"{self.api} batch API unreachable: {type(err).__name__}: {err}") from None
        if resp.status_code >= 400:
            detail = resp.text[:300].replace("\n", " ")
            raise BatchAPIError(
                f"{self.api} batch API: HTTP {resp.status_code} on {method} {path}: {detail}", resp.status_code
            )
        return resp

    async def aclose(self) -> None:
        await self.http.aclose()


class FileBatches(_Client):
    """Files + Batches: a JSONL file of {custom_id, method, url, body} lines is uploaded, then a batch made of it."""

    uploads = True

    def line(self, custom_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return {"custom_id": custom_id, "method": "POST", "url": self.spec.line_url, "body": body}

    async def find_file(self, filename: str) -> str | None:
        data = (await self._call("GET", "/files", params={"purpose": "batch"})).json().get("data") or []
        return next((f["id"] for f in data if f.get("filename") == filename), None)

    async def upload(self, filename: str, content: bytes) -> str:
        files = {"file": (filename, content, "application/jsonl")}
        return (await self._call("POST", "/files", data={"purpose": "batch"}, files=files)).json()["id"]

    async def create(self, local_tag: str, file_id: str | None, lines: list[dict[str, Any]]) -> BatchView:
        body = {
            "input_file_id": file_id,
            "endpoint": self.spec.line_url,
            "completion_window": "24h",
            "metadata": {"refed_batch": local_tag},
        }
        return self._view((await self._call("POST", "/batches", json=body)).json())

    async def find_batch(self, local_tag: str, planned_at: float, n: int, known: set[str]) -> BatchView | None:
        """The batch created for `local_tag` (its metadata says so), if a killed run created it."""
        data = (await self._call("GET", "/batches", params={"limit": 100})).json().get("data") or []
        for b in data:
            if (b.get("metadata") or {}).get("refed_batch") == local_tag:
                return self._view(b)
        return None

    async def status(self, batch_id: str) -> BatchView:
        return self._view((await self._call("GET", f"/batches/{batch_id}")).json())

    def _view(self, b: dict[str, Any]) -> BatchView:
        counts = b.get("request_counts") or {}
        return BatchView(
            b["id"],
            b.get("status", "?"),
            _FILES_FINAL.get(b.get("status")),
            {k: int(counts.get(k) or 0) for k in ("total", "completed", "failed")},
            b.get("created_at"),
            b,
        )

    async def results(self, view: BatchView, local_id: str, custom_ids: list[str]) -> list[StoredResult]:
        """Every request's outcome: the output and error files (lines in any order, matched by custom_id); a request
        in neither file (a failed batch) is lost."""
        out: dict[str, StoredResult] = {}
        for key in ("output_file_id", "error_file_id"):
            file_id = (view.raw or {}).get(key)
            if not file_id:
                continue
            text = (await self._call("GET", f"/files/{file_id}/content")).text
            for raw in text.splitlines():
                if not raw.strip():
                    continue
                row = json.loads(raw)
                cid = row.get("custom_id")
                if cid not in custom_ids and cid not in out:
                    continue
                out[cid] = self._result(row, local_id)
        wanted = set(custom_ids)
        missing = [
            StoredResult(cid, local_id, 0, None, view.final or "missing") for cid in custom_ids if cid not in out
        ]
        return [r for cid, r in out.items() if cid in wanted] + missing

    @staticmethod
    def _result(row: dict[str, Any], local_id: str) -> StoredResult:
        resp = row.get("response")
        err = row.get("error") or {}
        if resp and resp.get("status_code"):
            return StoredResult(row["custom_id"], local_id, int(resp["status_code"]), resp.get("body"))
        code = str(err.get("code") or "")
        lost = "expired" if "expired" in code else "cancelled" if "cancel" in code else "failed"
        return StoredResult(row["custom_id"], local_id, 0, err or None, lost)


class InlineBatches(_Client):
    """Message Batches: the requests go inline, {custom_id, params}."""

    def line(self, custom_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return {"custom_id": custom_id, "params": body}

    async def find_file(self, filename: str) -> str | None:
        return None

    async def upload(self, filename: str, content: bytes) -> str | None:
        return None  # no file step: create carries the requests

    async def create(self, local_tag: str, file_id: str | None, lines: list[dict[str, Any]]) -> BatchView:
        return self._view((await self._call("POST", "/messages/batches", json={"requests": lines})).json())

    async def find_batch(self, local_tag: str, planned_at: float, n: int, known: set[str]) -> BatchView | None:
        """Message batches carry no metadata: a batch created after this one was planned with as many requests
        is taken to be it (one run dir has one writer). Its results are matched by custom_id all the same."""
        data = (await self._call("GET", "/messages/batches", params={"limit": 100})).json().get("data") or []
        for b in data:
            view = self._view(b)
            if (
                view.id not in known
                and view.created_at is not None
                and view.created_at >= planned_at - 5
                and sum(view.counts.values()) == n
            ):
                return view
        return None

    async def status(self, batch_id: str) -> BatchView:
        return self._view((await self._call("GET", f"/messages/batches/{batch_id}")).json())

    def _view(self, b: dict[str, Any]) -> BatchView:
        counts = {k: int(v or 0) for k, v in (b.get("request_counts") or {}).items()}
        final = None
        if b.get("processing_status") == "ended":
            final = (
                "completed"
                if not (counts.get("expired") or counts.get("canceled"))
                else ("expired" if counts.get("expired") else "cancelled")
            )
        created = b.get("created_at")
        try:
            created_ts = datetime.fromisoformat(str(created).replace("Z", "+00:00")).timestamp() if created else None
        except ValueError:
            created_ts = None
        return BatchView(b["id"], b.get("processing_status", "?"), final, counts, created_ts, b)

    async def results(self, view: BatchView, local_id: str, custom_ids: list[str]) -> list[StoredResult]:
        url = (view.raw or {}).get("results_url")
        path = f"/messages/batches/{view.id}/results"
        if url and url.startswith(self.base):
            path = url[len(self.base) :]
        text = (await self._call("GET", path)).text
        out: dict[str, StoredResult] = {}
        for raw in text.splitlines():
            if raw.strip():
                row = json.loads(raw)
                out[row.get("custom_id")] = self._result(row, local_id)
        return [out.get(cid) or StoredResult(cid, local_id, 0, None, "missing") for cid in custom_ids]

    def _result(self, row: dict[str, Any], local_id: str) -> StoredResult:
        res = row.get("result") or {}
        kind = res.get("type")
        if kind == "succeeded":
            return StoredResult(row["custom_id"], local_id, 200, res.get("message"))
        if kind == "errored":
            error = res.get("error") or {}
            inner = error.get("error") or error
            return StoredResult(
                row["custom_id"],
                local_id,
                self.spec.error_status.get(inner.get("type"), 500),
                {"type": "error", "error": inner},
            )
        return StoredResult(row["custom_id"], local_id, 0, None, "expired" if kind == "expired" else "cancelled")


_PROTOCOLS: dict[str, type[_Client]] = {"files": FileBatches, "inline": InlineBatches}


def client_for_spec(spec: Any, key: str | None, role: str) -> _Client:
    """The batch client of an LM spec (refed_dspy.config.lm.LMSpec); ConfigError for a provider without a batch
    API. Its endpoint is the one the online calls go to (`reached_api_base`: the spec's api_base, else the one the
    environment gives the provider's clients, OPENAI_BASE_URL and kin), else the provider's own."""
    provider = batch_provider(spec, role)
    api = provider.batch
    assert api is not None
    return _PROTOCOLS[api.protocol](
        api,
        provider.batch_base(spec.reached_api_base),
        provider.batch_headers(key),
        provider.batch_query(spec.api_version),
        timeout=spec.call_timeout,
    )
