"""The loopback server caches prompts as Anthropic does on its Messages path: only up to a block marked with
cache_control, a prefix of at least the minimum, written on first sight and read after, reported as Anthropic reports
it; more than 4 marks, or a mark on an empty block, is refused. Its OpenAI path keeps OpenAI's automatic cache."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from loopback_server import read_log

MARK = {"type": "ephemeral"}
REFERENCE = "[[ ## example ## ]]\n" + "a long reference answer " * 60  # 240 tokens as the server counts them


def post(srv, path: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{srv.port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "x-api-key": "k", "anthropic-version": "2023-06-01"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def messages(instruction: str, mark: bool = True, system: str = "Answer well.") -> dict:
    first = {"type": "text", "text": REFERENCE, **({"cache_control": MARK} if mark else {})}
    content = [first, {"type": "text", "text": f"[[ ## instruction ## ]]\n{instruction}"}]
    return {
        "model": "claude-haiku-4-5",
        "max_tokens": 50,
        "system": system,
        "messages": [{"role": "user", "content": content}],
    }


def test_a_marked_prefix_is_written_on_first_sight_and_read_after(server_factory):
    srv = server_factory(marked_cache_min_tokens=100)
    status, first = post(srv, "/v1/messages", messages("write a poem"))
    assert status == 200
    u = first["usage"]
    assert u["cache_read_input_tokens"] == 0 and u["cache_creation_input_tokens"] > 200
    _, second = post(srv, "/v1/messages", messages("write a song"))
    v = second["usage"]
    assert v["cache_read_input_tokens"] == u["cache_creation_input_tokens"] and v["cache_creation_input_tokens"] == 0
    # a line is written after its answer, so the second request's line may come first: seq is arrival order
    log = sorted((e for e in read_log(srv.cfg.log_path) if e.get("status") == 200), key=lambda e: e["seq"])
    # the log's prompt tokens are all of them: input_tokens leave out what was read and written
    for entry, answer in zip(log, (u, v), strict=True):
        assert entry["cache_marks"] == 1
        parts = answer["input_tokens"] + answer["cache_read_input_tokens"] + answer["cache_creation_input_tokens"]
        assert entry["prompt_tokens"] == parts and entry["cached_tokens"] == answer["cache_read_input_tokens"]
    assert log[0]["cache_write_tokens"] == u["cache_creation_input_tokens"]


def test_unmarked_or_short_prefixes_are_never_cached(server_factory):
    srv = server_factory(marked_cache_min_tokens=100)
    for _ in range(2):
        _, answer = post(srv, "/v1/messages", messages("write a poem", mark=False))
        assert answer["usage"]["cache_read_input_tokens"] == answer["usage"]["cache_creation_input_tokens"] == 0
    short = server_factory()  # Haiku 4.5's own minimum: 4,096 tokens
    for _ in range(2):
        _, answer = post(short, "/v1/messages", messages("write a poem"))
        assert answer["usage"]["cache_read_input_tokens"] == answer["usage"]["cache_creation_input_tokens"] == 0


def test_anthropics_limits_on_marks_are_kept(server_factory):
    srv = server_factory(marked_cache_min_tokens=100)
    body = messages("x")
    body["messages"][0]["content"] = [{"type": "text", "text": f"part {i}", "cache_control": MARK} for i in range(5)]
    status, answer = post(srv, "/v1/messages", body)
    assert status == 400 and answer["error"]["type"] == "invalid_request_error" and "maximum of 4" in str(answer)
    body["messages"][0]["content"] = [{"type": "text", "text": " ", "cache_control": MARK}]
    assert post(srv, "/v1/messages", body)[0] == 400


def test_the_openai_path_keeps_its_automatic_prefix_cache(server_factory):
    srv = server_factory(cache_min_tokens=128, cache_step=64)
    chat = {"model": "m", "messages": [{"role": "system", "content": REFERENCE}, {"role": "user", "content": "hi"}]}
    post(srv, "/v1/chat/completions", chat)
    _, answer = post(srv, "/v1/chat/completions", chat)
    assert answer["usage"]["prompt_tokens_details"]["cached_tokens"] >= 128
