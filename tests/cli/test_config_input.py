"""Config input that used to slip through, as a user meets it at the command line: a price, budget or duration that is
not a finite number, an `extra` key the LM section sets itself, a `~` in a path, and `--fresh` on a run whose cache/
is a link. Each bad value is one line on stderr and exit 2 before any request; each `~` is the home directory."""

import http.server
import json
import os
import shutil
import threading
from pathlib import Path

import pytest
from cli_helpers import lines, refed, run_refed, sets
from conftest import run_overrides
from loopback_server import read_log

SMALL = {"seeds.limit": 2, "synthesis.instructions_per_feature": 1}
MODEL = "openai/gpt-4o-mini"  # the teacher run_overrides leaves in place


def _one_line_exit_2(code: int, err: str, says: str) -> None:
    assert code == 2 and says in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


@pytest.mark.parametrize(
    "toml_text, override, says",
    [
        # the case: costs became NaN, summary.json held a bare NaN and the cost budget never stopped the run
        ("[teacher]\ninput_usd_per_mtok = inf\n", None, "teacher.input_usd_per_mtok: must be a finite number, got inf"),
        (None, f'prices."{MODEL}".input_usd_per_mtok=inf', f'prices."{MODEL}".input_usd_per_mtok: must be a finite'),
        (None, f'prices."{MODEL}".cached_input_usd_per_mtok=nan', "cached_input_usd_per_mtok: must be a finite"),
        (None, "teacher.output_usd_per_mtok=-inf", "teacher.output_usd_per_mtok: must be a finite number, got -inf"),
        (None, "teacher.output_usd_per_mtok=-1", "teacher.output_usd_per_mtok: input should be greater than or equal"),
        (None, "synthesis.max_cost_usd=inf", "synthesis.max_cost_usd: must be a finite number, got inf"),
        (None, "synthesis.max_calls_per_sample=nan", "synthesis.max_calls_per_sample: must be a finite number"),
    ],
)
def test_a_price_or_budget_that_is_not_a_finite_number_is_one_line_before_any_call(
    server_factory, tmp_path, toml_text, override, says
):
    srv = server_factory()
    run = tmp_path / "run"
    args = ["synthesize", *sets(run_overrides(srv, run, 4, **SMALL, **{"synthesis.max_cost_usd": 0.0001}))]
    if toml_text is not None:
        (tmp_path / "c.toml").write_text(toml_text)
        args += ["--config", str(tmp_path / "c.toml")]
    if override is not None:
        args += ["--set", override]
    code, _, err = run_refed(*args)
    _one_line_exit_2(code, err, says)
    assert read_log(srv.cfg.log_path) == [] and not run.exists()


@pytest.mark.parametrize(
    "override, says",
    [
        # the case: an OverflowError traceback from the progress thread
        ("run.progress_every_s=inf", "run.progress_every_s: must be a finite number, got inf"),
        ("run.progress_every_s=1e300", "run.progress_every_s: input should be less than or equal to 604800"),
        ("run.stop_grace_s=nan", "run.stop_grace_s: must be a finite number, got nan"),
        ("teacher.timeout=inf", "teacher.timeout: must be a finite number, got inf"),
        ("batch.poll_s=inf", "batch.poll_s: must be a finite number, got inf"),
        ("batch.linger_s=1e12", "batch.linger_s: input should be less than or equal to 604800"),
    ],
)
def test_a_duration_that_is_not_a_finite_number_of_seconds_is_one_line(server_factory, tmp_path, override, says):
    srv = server_factory()
    run = tmp_path / "run"
    code, _, err = run_refed(
        "synthesize", *sets(run_overrides(srv, run, 4, **SMALL, **{"run.progress": "true"})), "--set", override
    )
    _one_line_exit_2(code, err, says)
    assert read_log(srv.cfg.log_path) == [] and not run.exists()


@pytest.mark.parametrize(
    "override, says",
    [
        # the cases: an OverflowError traceback (a run dir left behind); 25 tries of an ftp:// or a bare word,
        # exit 3, a run dir left behind; a message about the price of a model named ''
        ("synthesis.max_calls_per_sample=1e308", "synthesis.max_calls_per_sample: input should be less than or equal"),
        ("teacher.api_base='ftp://127.0.0.1/v1'", "teacher.api_base: must be an http:// or https:// URL with a host"),
        ("teacher.api_base='127.0.0.1:8000/v1'", "got '127.0.0.1:8000/v1' (http://127.0.0.1:8000/v1?)"),
        ("judge.api_base=['http://127.0.0.1:9/v1', 'not a url']", "judge.api_base: must be an http:// or https://"),
        # the attacker's case: a password in the URL was written to config.toml and said in the error (never again)
        ("teacher.api_base='http://user:hunter2pass@127.0.0.1:9/v1'", "carries a user name or password (http://***@"),
        ("teacher.api_base='http://user:hunter2/x@127.0.0.1:9/v1'", "carries a user name or password (http://***@1"),
        ("teacher.api_base='http:/user:hunter2@127.0.0.1:9/v1'", "carries a user name or password (***@127.0.0.1"),
        ("teacher.model=''", "teacher.model: needs a model name"),
        ("judge.model=' '", "judge.model: needs a model name"),
        # every number of every section is bounded, not the fields someone thought of
        ("synthesis.max_cost_usd=1e300", "synthesis.max_cost_usd: must be a number of magnitude at most 1e15"),
        ("teacher.input_usd_per_mtok=1e300", "teacher.input_usd_per_mtok: must be a number of magnitude at most"),
        ("judging.max_calls=10000000000000000000", "judging.max_calls: must be a number of magnitude at most 1e15"),
        ("synthesis.seed=-10000000000000000", "synthesis.seed: must be a number of magnitude at most 1e15"),
        (
            "teacher.extra={top_p=1e300}",
            "teacher.extra: must be a number of magnitude at most 1e15, got 1e+300 (at top_p)",
        ),
        (
            "filters=[{name='length', max_words=10000000000000000}]",
            "filters.0.max_words: must be a number of magnitude",
        ),
    ],
)
def test_an_absurd_number_a_non_http_endpoint_or_an_empty_model_is_one_line_and_no_run_dir(
    server_factory, tmp_path, override, says
):
    srv = server_factory()
    run = tmp_path / "run"
    code, _, err = run_refed("synthesize", *sets(run_overrides(srv, run, 4, **SMALL)), "--set", override)
    _one_line_exit_2(code, err, says)
    assert read_log(srv.cfg.log_path) == [] and not run.exists() and "hunter2" not in err


@pytest.mark.parametrize(
    "extra, says",
    [
        # the case: "RefedLM() got multiple values for keyword argument 'max_tokens'"
        ("{max_tokens = -5}", "teacher.extra: 'max_tokens' is a setting of [teacher] itself"),
        ("{temperature = 0.2}", "set teacher.temperature instead"),
        ("{api_base = 'http://127.0.0.1:9/v1'}", "set teacher.api_base instead"),  # it used to lose to api_base
        ("{base_url = 'http://127.0.0.1:9/v1'}", "'base_url' is another name of teacher.api_base"),
        ("{timeout = 5}", "set teacher.timeout instead"),
        ("{num_retries = 0}", "set teacher.num_retries instead"),
        ("{model = 'openai/gpt-4o'}", "set teacher.model instead"),
    ],
)
def test_an_extra_key_the_section_sets_itself_is_one_line_naming_the_field(server_factory, tmp_path, extra, says):
    srv = server_factory()
    run = tmp_path / "run"
    code, _, err = run_refed(
        "synthesize", *sets(run_overrides(srv, run, 4, **SMALL)), "--set", f"teacher.extra={extra}"
    )
    _one_line_exit_2(code, err, says)
    assert read_log(srv.cfg.log_path) == [] and not run.exists()


def test_every_writing_command_refuses_a_bad_number_or_extra_key_in_one_line(server_factory, tmp_path):
    """The checks live in the config's models: every command that reads a config refuses these alike."""
    srv = server_factory()
    run = tmp_path / "run"
    code, _, err = run_refed("synthesize", *sets(run_overrides(srv, run, 4, **SMALL)))
    assert code == 0, err
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    experiment = tmp_path / "exp.toml"
    experiment.write_text(f'[experiment]\nout = "{tmp_path / "e"}"\n')
    for bad, says in (
        ("teacher.input_usd_per_mtok=inf", "must be a finite number"),
        ("run.progress_every_s=inf", "must be a finite number"),
        ("judge.extra={max_tokens=5}", "set judge.max_tokens instead"),
    ):
        for cmd in (
            ("synthesize", *sets(run_overrides(srv, tmp_path / "new", 4, **SMALL))),
            ("estimate", "--set", f"run.dir='{tmp_path / 'new'}'"),
            ("compare", "--methods", "no_feedback", *sets(run_overrides(srv, tmp_path / "new", 4, **SMALL))),
            ("optimize", *sets(run_overrides(srv, tmp_path / "new", 4, **SMALL))),
            ("experiment", "--config", str(experiment)),
            ("judge", "run", str(run)),
            ("filter", str(run), "--out", str(tmp_path / "new"), "--apply", "dedup"),
            ("export", str(run), "-f", "messages", "--out", str(tmp_path / "new")),
            ("report", str(run)),
        ):
            code, _, err = run_refed(*cmd, "--set", bad)
            assert code == 2 and says in err and len(err.strip().splitlines()) == 1, (cmd, bad, err)
    assert not (tmp_path / "new").exists() and not (tmp_path / "e").exists()
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before


def test_a_tilde_in_a_path_is_the_home_directory_in_the_config_and_on_the_command_line(server_factory, tmp_path):
    srv = server_factory()
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    env = {"HOME": str(home)}
    # run.dir in a TOML file read from `--config '~/c.toml'`, as a shell hands a quoted ~ on
    (home / "c.toml").write_text('[run]\ndir = "~/runs/x"\n')
    overrides = [o for o in run_overrides(srv, "unused", 4, **SMALL) if not o.startswith("run.dir=")]
    p = refed("synthesize", "--config", "~/c.toml", *sets(overrides), env_extra=env, cwd=str(cwd))
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    run = home / "runs" / "x"
    assert len(lines(run / "samples.jsonl")) == 4
    assert "~" not in (run / "config.toml").read_text()  # the path the run was made in, as it is
    # the same in --set, and in the path arguments of the commands that read or write a run
    for cmd in (
        ("synthesize", *sets(run_overrides(srv, "~/runs/x", 4, **SMALL))),  # a resume of the same run
        ("status", "~/runs/x"),
        ("report", "~/runs/x"),
        ("filter", "~/runs/x", "--out", "~/filtered", "--apply", "dedup"),
        ("export", "~/runs/x", "-f", "messages", "--out", "~/exported"),
    ):
        p = refed(*cmd, env_extra=env, cwd=str(cwd))
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, (cmd, err)
    assert (home / "filtered" / "samples.jsonl").exists() and list((home / "exported").glob("train.*"))
    assert (run / "report.html").exists()
    assert list(cwd.iterdir()) == []  # no folder named ~ here


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_fresh_with_a_linked_cache_says_so_and_leaves_the_shared_cache_whole(server_factory, tmp_path):
    srv = server_factory()
    run = tmp_path / "run"
    args = ("synthesize", *sets(run_overrides(srv, run, 4, **SMALL)))
    code, _, err = run_refed(*args)
    assert code == 0, err
    paid = len(read_log(srv.cfg.log_path))
    shared = tmp_path / "shared-cache"  # a cache the user shares between runs, linked into this one
    shutil.move(run / "cache", shared)
    os.symlink(shared, run / "cache")
    kept = _tree(shared)
    code, out, err = run_refed(*args, "--fresh")
    assert code == 0, err
    said = [line for line in err.splitlines() if "link" in line]
    assert len(said) == 1 and f"is a link to {shared}" in said[0] and f"rm {run / 'cache'}" in said[0], err
    assert "used again" in said[0]
    assert (run / "cache").is_symlink() and len(lines(run / "samples.jsonl")) == 4
    assert len(read_log(srv.cfg.log_path)) == paid  # every answer came from the shared cache, as the line says
    assert set(kept) <= set(_tree(shared))  # nothing of the shared cache deleted
    # what the line advises gives a fresh cache: the link removed, the run pays again and the shared cache stays
    (run / "cache").unlink()
    code, out, err = run_refed(*args, "--fresh")
    assert code == 0 and "link" not in err, err
    assert (run / "cache").is_dir() and not (run / "cache").is_symlink()
    assert len(read_log(srv.cfg.log_path)) > paid
    assert set(kept) <= set(_tree(shared))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["samples"] == 4


def test_a_key_refused_inside_another_library_s_client_is_one_line_and_exit_2(run):
    """The report's embedder goes through LiteLLM, which wraps the destination check's refusal in errors of its own:
    the command still ends in the refusal's one line and exit 2 (it printed three chained tracebacks, exit 1)."""
    planted = "sk-proj-embedding-refused-0123456789"
    code, out, err = run_refed(
        "report",
        str(run),
        "--set",
        "report.embedding_model='openai/text-embedding-3-small'",
        env_extra={"OPENAI_API_KEY": planted, "OPENAI_BASE_URL": "http://api.openai.com.evil.test/v1"},
    )
    _one_line_exit_2(code, err, "refused to send $OPENAI_API_KEY (openai's key) to api.openai.com.evil.test")
    assert planted not in out + err


class _Embeddings(http.server.BaseHTTPRequestHandler):
    """An OpenAI-compatible embeddings server on loopback: answers `status` (200: a vector per input), counting the
    requests it is sent (`server.requests`)."""

    def do_POST(self) -> None:  # noqa: N802
        self.server.requests += 1
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        reply = {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}
        if self.server.status == 200:
            data = [
                {"object": "embedding", "index": i, "embedding": [len(t) % 7, 1.0, i % 3]} for i, t in enumerate(texts)
            ]
            reply = {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": 3, "total_tokens": 3},
            }
        raw = json.dumps(reply).encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *_: object) -> None:
        pass


def _embeddings_server(status: int) -> http.server.ThreadingHTTPServer:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Embeddings)
    srv.status, srv.requests = status, 0
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def test_a_hosted_embedding_model_s_failure_is_one_line_and_its_answers_are_not_cached_across_servers(run, tmp_path):
    """The attacker's trial: `refed report` with a hosted [report] embedding_model printed a 79-line LiteLLM traceback,
    exit 1, when the server refused the key; and its answers went to DSPy's own cache, keyed without the endpoint, so a
    second server's report read the first one's embeddings. Now a refused key is one line, exit 2 (a server error:
    exit 3), and each report asks the server it names."""
    args = ("report", str(run), "--set", "report.embedding_model='openai/text-embedding-3-small'")
    env = {"OPENAI_API_KEY": "sk-proj-embedding-0123456789", "DSPY_CACHEDIR": str(tmp_path / "dspy_cache")}
    servers = {status: _embeddings_server(status) for status in (401, 200)}
    try:
        code, out, err = run_refed(*args, env_extra={**env, "OPENAI_BASE_URL": _base(servers[401])})
        _one_line_exit_2(
            code, err, "report.embedding_model openai/text-embedding-3-small: the embedding request failed"
        )
        assert "sk-proj-embedding-0123456789" not in out + err
        for _ in range(2):  # the same texts twice: the server is asked each time
            code, out, err = run_refed(*args, env_extra={**env, "OPENAI_BASE_URL": _base(servers[200])})
            assert code == 0, err
        assert servers[200].requests == 2
    finally:
        for srv in servers.values():
            srv.shutdown()


def _base(srv: http.server.ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}/v1"
