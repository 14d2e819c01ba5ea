"""Provider batch APIs for the loopback server: OpenAI Files + Batches and Anthropic Message Batches.

Each request line of a batch is answered by the loopback's own chat or messages endpoint (an HTTP call to itself, tagged
with the line's custom_id and batch id), so every chat fault the server injects applies to batch lines too, and
the server's log shows each line it answered. A batch walks the providers' status timelines:

- OpenAI: validating -> in_progress -> finalizing -> completed, or failed (at validation), expired (the
  window ran out: finished lines in the output file, the rest in the error file with code batch_expired),
  cancelling -> cancelled (the same split). Output and error files list their lines in shuffled order.
- Anthropic: in_progress -> ended (or canceling -> ended), each result succeeded | errored | canceled | expired,
  in shuffled order.

Knobs (ServerConfig): batch_validating_s, batch_line_s, batch_finalizing_s; batch_fail_every (every k-th batch
fails validation); batch_expire_every (every k-th batch expires halfway); batch_line_error_rate (a line's
answer is a 500 in the error file / an errored result, chosen by its custom_id); batch_api_errors (the first k
uploads or creates answer 500); batch_line_error_first (the first k lines answered are 500s).
Every batch created is logged as {"batch_create": id, "api": ..., "custom_ids": [...]}.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import itertools
import json
import random
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field


def _unit(key: str, salt: str) -> float:
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass
class _Batch:
    id: str
    api: str  # openai | anthropic
    lines: list[dict]
    created: float = field(default_factory=time.time)
    status: str = "validating"
    metadata: dict = field(default_factory=dict)
    input_file_id: str | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    results: list[dict] = field(default_factory=list)  # anthropic: results as they finish
    done: int = 0
    failed: int = 0
    cancel: bool = False
    ended: float | None = None


class BatchAPI:
    """State and handlers of the batch endpoints (one per server)."""

    def __init__(self, state, port_of):
        self.state = state
        self.cfg = state.cfg
        self.port_of = port_of  # () -> the server's port, for calling its own chat endpoint
        self.lock = threading.RLock()
        self.files: dict[str, dict] = {}
        self.batches: dict[str, _Batch] = {}
        self.seq = itertools.count(1)
        self.rng = random.Random(self.cfg.seed + 1)

    def knob(self, name: str, default):
        return self.cfg.extra.get(name, default)

    # ---- dispatch ---------------------------------------------------------------------------
    def handles(self, path: str) -> bool:
        path = path.split("?")[0]
        return "/files" in path or "/batches" in path

    def get(self, path: str, query: dict) -> tuple[int, object]:
        parts = path.split("?")[0].rstrip("/").split("/")
        if parts[-1] == "content" and "files" in parts:
            f = self.files.get(parts[-2])
            return (200, f["content"]) if f else (404, _err("file not found"))
        if "messages" in parts:  # anthropic
            if parts[-1] == "batches":
                return 200, self._a_list(query)
            if parts[-1] == "results":
                b = self.batches.get(parts[-2])
                if not b:
                    return 404, _err("batch not found")
                if b.status != "ended":
                    return 400, _err("results are not ready")
                lines = list(b.results)
                self.rng.shuffle(lines)
                return 200, "".join(json.dumps(x) + "\n" for x in lines)
            b = self.batches.get(parts[-1])
            return (200, self._a_view(b)) if b else (404, _err("batch not found"))
        if parts[-1] == "files":
            purpose = query.get("purpose")
            data = [self._f_view(f) for f in self.files.values() if purpose in (None, f["purpose"])]
            return 200, {"object": "list", "data": data}
        if parts[-1] == "batches":
            data = sorted(
                (self._o_view(b) for b in self.batches.values() if b.api == "openai"),
                key=lambda v: v["created_at"],
                reverse=True,
            )
            return 200, {"object": "list", "data": data[: int(query.get("limit", 20))], "has_more": False}
        b = self.batches.get(parts[-1])
        return (200, self._o_view(b)) if b else (404, _err("batch not found"))

    def post(self, path: str, headers, raw: bytes) -> tuple[int, object]:
        parts = path.split("?")[0].rstrip("/").split("/")
        with self.lock:  # batch_api_errors: the first k uploads/creates answer 500 (a provider having a bad minute)
            self.api_errors = getattr(self, "api_errors", 0)
            if parts[-1] != "cancel" and self.api_errors < self.knob("batch_api_errors", 0):
                self.api_errors += 1
                return 500, _err("injected batch API error", "server_error")
        if parts[-1] == "cancel":
            b = self.batches.get(parts[-2])
            if not b:
                return 404, _err("batch not found")
            with self.lock:
                if b.status in ("validating", "in_progress", "finalizing"):
                    b.cancel = True
                    b.status = "cancelling" if b.api == "openai" else "canceling"
            return 200, self._o_view(b) if b.api == "openai" else self._a_view(b)
        if parts[-1] == "files":
            return self._upload(headers, raw)
        body = json.loads(raw)
        if "messages" in parts:
            lines = body.get("requests") or []
            return self._create("anthropic", lines, {})
        f = self.files.get(body.get("input_file_id"))
        if not f:
            return 404, _err("input file not found")
        lines = [json.loads(x) for x in f["content"].splitlines() if x.strip()]
        status, view = self._create("openai", lines, body.get("metadata") or {}, f["id"])
        return status, view

    # ---- files ------------------------------------------------------------------------------
    def _upload(self, headers, raw: bytes) -> tuple[int, object]:
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + headers["Content-Type"].encode() + b"\r\n\r\n" + raw
        )
        fields, filename, content = {}, None, b""
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name == "file":
                filename = part.get_filename()
                content = part.get_payload(decode=True)
            else:
                fields[name] = part.get_content().strip()
        fid = f"file-{next(self.seq):06d}"
        f = {
            "id": fid,
            "filename": filename,
            "purpose": fields.get("purpose"),
            "bytes": len(content),
            "content": content.decode(),
            "created_at": int(time.time()),
        }
        with self.lock:
            self.files[fid] = f
        self.state.record({"file_upload": fid, "filename": filename, "bytes": len(content)})
        return 200, self._f_view(f)

    def _f_view(self, f: dict) -> dict:
        return {
            "id": f["id"],
            "object": "file",
            "bytes": f["bytes"],
            "created_at": f["created_at"],
            "filename": f["filename"],
            "purpose": f["purpose"],
        }

    def _new_file(self, lines: list[dict], purpose: str) -> str:
        fid = f"file-{next(self.seq):06d}"
        content = "".join(json.dumps(x) + "\n" for x in lines)
        with self.lock:
            self.files[fid] = {
                "id": fid,
                "filename": f"{fid}.jsonl",
                "purpose": purpose,
                "bytes": len(content),
                "content": content,
                "created_at": int(time.time()),
            }
        return fid

    # ---- batches ----------------------------------------------------------------------------
    def _create(self, api: str, lines: list[dict], metadata: dict, input_file_id: str | None = None):
        ids = [line.get("custom_id") for line in lines]
        if len(set(ids)) != len(ids) or not all(ids):
            return 400, _err("custom_id values must be present and unique within a batch")
        n = next(self.seq)
        bid = f"batch_{n:06d}" if api == "openai" else f"msgbatch_{n:06d}"
        b = _Batch(
            bid,
            api,
            lines,
            metadata=metadata,
            input_file_id=input_file_id,
            status="validating" if api == "openai" else "in_progress",
        )
        with self.lock:
            self.batches[bid] = b
            ordinal = sum(1 for x in self.batches.values() if x.api == api)
        self.state.record({"batch_create": bid, "api": api, "custom_ids": ids, "metadata": metadata})
        threading.Thread(target=self._process, args=(b, ordinal), daemon=True).start()
        return 200, self._o_view(b) if api == "openai" else self._a_view(b)

    def _process(self, b: _Batch, ordinal: int) -> None:
        time.sleep(self.knob("batch_validating_s", 0.02))
        fail_every = self.knob("batch_fail_every", 0)
        if b.api == "openai" and fail_every and ordinal % fail_every == 0:
            with self.lock:
                b.status, b.ended = "failed", time.time()
            return
        with self.lock:
            if b.status == "validating":
                b.status = "in_progress"
        expire_every = self.knob("batch_expire_every", 0)
        stop_at = len(b.lines) // 2 if expire_every and ordinal % expire_every == 0 else None
        out, errors = [], []
        for i, line in enumerate(b.lines):
            if b.cancel or (stop_at is not None and i >= stop_at):
                why = "cancelled" if b.cancel else "expired"
                for rest in b.lines[i:]:
                    errors.append(self._left_out(b, rest, why))
                break
            status, body = self._answer(b, line)
            time.sleep(self.knob("batch_line_s", 0.0))
            with self.lock:
                b.done += 1
                b.failed += status != 200
            (out if status == 200 else errors).append(self._result(b, line, status, body))
            if b.api == "anthropic":
                with self.lock:
                    b.results.append(out[-1] if status == 200 else errors[-1])
        time.sleep(self.knob("batch_finalizing_s", 0.02))
        with self.lock:
            if b.api == "openai":
                b.status = "finalizing" if not b.cancel else b.status
        time.sleep(self.knob("batch_finalizing_s", 0.02))
        self.rng.shuffle(out)
        self.rng.shuffle(errors)
        with self.lock:
            if b.api == "openai":
                b.output_file_id = self._new_file(out, "batch_output") if out else None
                b.error_file_id = self._new_file(errors, "batch_output") if errors else None
                b.status = "cancelled" if b.cancel else ("expired" if stop_at is not None else "completed")
            else:
                b.results = [*out, *errors]
                b.status = "ended"
            b.ended = time.time()

    def _answer(self, b: _Batch, line: dict) -> tuple[int, dict]:
        cid = line["custom_id"]
        with self.lock:
            self.lines_answered = getattr(self, "lines_answered", 0) + 1
            first = self.lines_answered <= self.knob("batch_line_error_first", 0)
        if first or _unit(cid, "batch_line_error") < self.knob("batch_line_error_rate", 0.0):
            return 500, _err("injected batch line error", "server_error")
        body, path = (line["body"], "chat/completions") if b.api == "openai" else (line["params"], "messages")
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port_of()}/v1/{path}",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "X-Custom-Id": cid, "X-Batch-Id": b.id},
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                status, payload = resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            status, payload = err.code, json.loads(err.read() or b"{}")
        return status, payload

    def _result(self, b: _Batch, line: dict, status: int, body: dict) -> dict:
        cid = line["custom_id"]
        if b.api == "openai":
            ok = status == 200
            return {
                "id": f"batch_req_{hashlib.sha256(cid.encode()).hexdigest()[:12]}",
                "custom_id": cid,
                "response": {"status_code": status, "request_id": f"req_{cid[:8]}", "body": body},
                "error": None if ok else {"code": "server_error", "message": "line failed"},
            }
        if status == 200:
            return {"custom_id": cid, "result": {"type": "succeeded", "message": body}}
        return {
            "custom_id": cid,
            "result": {
                "type": "errored",
                "error": {
                    "type": "error",
                    "error": {"type": "api_error", "message": (body.get("error") or {}).get("message", "error")},
                },
            },
        }

    def _left_out(self, b: _Batch, line: dict, why: str) -> dict:
        cid = line["custom_id"]
        if b.api == "openai":
            code = "batch_cancelled" if why == "cancelled" else "batch_expired"
            return {
                "id": f"batch_req_{hashlib.sha256(cid.encode()).hexdigest()[:12]}",
                "custom_id": cid,
                "response": None,
                "error": {"code": code, "message": f"This request was {why}."},
            }
        return {"custom_id": cid, "result": {"type": "canceled" if why == "cancelled" else "expired"}}

    # ---- views ------------------------------------------------------------------------------
    def _o_view(self, b: _Batch) -> dict:
        return {
            "id": b.id,
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "input_file_id": b.input_file_id,
            "completion_window": "24h",
            "status": b.status,
            "output_file_id": b.output_file_id,
            "error_file_id": b.error_file_id,
            "created_at": int(b.created),
            "metadata": b.metadata,
            "errors": {"data": [{"code": "invalid_request", "message": "validation failed"}]}
            if b.status == "failed"
            else None,
            "request_counts": {"total": len(b.lines), "completed": b.done - b.failed, "failed": b.failed},
        }

    def _a_view(self, b: _Batch) -> dict:
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if b.status == "ended":
            for r in b.results:
                counts[r["result"]["type"]] += 1
        else:
            counts["processing"] = len(b.lines) - b.done
            counts["succeeded"] = b.done - b.failed
            counts["errored"] = b.failed
        base = f"http://127.0.0.1:{self.port_of()}/v1/messages/batches/{b.id}"
        return {
            "id": b.id,
            "type": "message_batch",
            "processing_status": b.status,
            "request_counts": counts,
            "created_at": _iso(b.created),
            "ended_at": _iso(b.ended) if b.ended else None,
            "expires_at": _iso(b.created + 86400),
            "results_url": f"{base}/results" if b.status == "ended" else None,
        }

    def _a_list(self, query: dict) -> dict:
        data = sorted(
            (self._a_view(b) for b in self.batches.values() if b.api == "anthropic"),
            key=lambda v: v["created_at"],
            reverse=True,
        )
        return {"data": data[: int(query.get("limit", 20))], "has_more": False}


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


def _err(message: str, kind: str = "invalid_request_error") -> dict:
    return {"error": {"message": message, "type": kind}}
