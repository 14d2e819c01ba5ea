"""A key goes only to its provider's hosts: the host each key is sent to (every api_base, or the provider's own
endpoint) is checked against the provider whose variable holds it, for LMs built from a config, LMs handed in from
Python, logged programs and experiment cells; loopback and private hosts take any key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dspy
import pytest
from cli_helpers import run_refed, sets
from conftest import run_overrides
from loopback_server import read_log

from refed_dspy.clients.destination import check_lm_key
from refed_dspy.config import LMSpec
from refed_dspy.errors import KeyProviderError
from refed_dspy.providers.keys import (
    check_key,
    check_key_goes_to_its_provider,
    host_of,
    host_provider,
    is_private_host,
    key_refusal,
    key_route,
    key_warnings,
)

SOCKET_SPY = Path(__file__).resolve().parents[1] / "socket_spy"
GROQ_BASE = "http://api.groq.com/openai/v1"


@pytest.mark.parametrize(
    "host, private",
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("localhost", True),
        ("::1", True),
        ("10.1.2.3", True),
        ("172.16.0.9", True),
        ("172.31.255.1", True),
        ("192.168.1.20", True),
        ("fc00::1", True),
        ("fd12:3456::7", True),
        ("gpu-box.local", True),
        ("vllm", True),  # a bare single-label name: a machine or a container of one's own
        ("127.1", True),  # inet_aton's short form of 127.0.0.1
        ("0x7f000001", True),
        ("134744072", False),  # 8.8.8.8 as one decimal number: a public address, not a LAN name
        ("0x8080808", False),
        ("010.010.010.010", False),  # octal: 8.8.8.8
        ("172.32.0.1", False),
        ("8.8.8.8", False),
        ("api.groq.com", False),
        ("my-gateway.example.com", False),
    ],
)
def test_which_hosts_are_the_users_own(host, private):
    assert is_private_host(host) is private


def test_hosts_by_provider():
    assert (
        host_of("http://api.groq.com/openai/v1") == "api.groq.com" and host_of("API.OpenAI.com/v1") == "api.openai.com"
    )
    assert host_of("http://[::1]:8000/v1") == "::1"
    assert host_provider("api.groq.com") == "groq" and host_provider("res.openai.azure.com") == "azure"
    assert host_provider("api.together.xyz") == "together_ai" and host_provider("my-gateway.example.com") is None


# every pair the attacker's trial let through: (model, api_base, variable (None: the one the model follows))
FOREIGN = [
    ("openai/llama-3.1-8b-instant", GROQ_BASE, None),
    ("openai/llama-3.1-8b-instant", GROQ_BASE, "OPENAI_API_KEY"),
    ("openai/meta-llama/Llama-3-8b", "https://api.together.xyz/v1", None),
    ("openai/claude-haiku-4-5", "https://api.anthropic.com/v1", None),
    ("anthropic/claude-haiku-4-5", "https://api.groq.com", None),
    ("groq/llama-3.1-8b-instant", "https://api.openai.com/v1", None),
    ("openai/x", ["http://127.0.0.1:9/v1", GROQ_BASE], None),  # one replica of several is another provider's
    # keys of providers no provider file registers: their hosts are LiteLLM's (DEFAULT_HOSTS), or unknown
    ("openai/x", "https://api.anthropic.com/v1", "PERPLEXITYAI_API_KEY"),
    ("openai/x", "https://api.openai.com/v1", "CEREBRAS_API_KEY"),
    ("openai/x", "https://api.openai.com/v1", "REPLICATE_API_KEY"),  # hosts unknown: still not another's
    ("openai/x", "https://api.perplexity.ai", "OPENAI_API_KEY"),  # a host known from LiteLLM's table
]


@pytest.mark.parametrize("model, base, env", FOREIGN)
def test_a_key_to_another_providers_host_is_refused(model, base, env):
    spec = LMSpec(model=model, api_base=base, api_key_env=env)
    with pytest.raises(KeyProviderError) as err:
        check_key_goes_to_its_provider(spec, "teacher")
    said = str(err.value)
    variable = (
        env
        or {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY", "groq": "GROQ_API_KEY"}[model.split("/")[0]]
    )
    host = next(host_of(b) for b in ([base] if isinstance(base, str) else base) if not is_private_host(host_of(b)))
    assert variable in said and host in said and "api_key_env" in said and "refused before any call" in said, said


@pytest.mark.parametrize(
    "model, base, env",
    [
        ("openai/llama-3.1-8b-instant", "http://127.0.0.1:8000/v1", None),  # loopback: any key
        ("openai/llama-3.1-8b-instant", "http://10.0.0.5:8000/v1", "ANTHROPIC_API_KEY"),  # private network
        ("openai/x", "http://[::1]:8000/v1", "GROQ_API_KEY"),
        ("openai/x", "http://vllm:8000/v1", "OPENAI_API_KEY"),  # a container's service name
        ("openai/llama-3.1-8b-instant", GROQ_BASE, "GROQ_API_KEY"),  # groq's key to groq's host
        ("openai/llama-3.1-8b-instant", GROQ_BASE, "MY_VLLM_KEY"),  # a name of one's own goes anywhere
        ("openai/x", "https://my-gateway.example.com/v1", "OPENAI_API_KEY"),  # a host refed does not know: a proxy
        ("openai/gpt-4o-mini", "https://api.openai.com/v1", None),
        ("groq/llama-3.1-8b-instant", None, None),
        ("perplexity/sonar", None, None),
        ("perplexity/sonar", "https://api.perplexity.ai", "PERPLEXITYAI_API_KEY"),
        ("together_ai/x", "https://api.together.ai/v1", None),  # LiteLLM's host for it beside refed's
        ("openai/x", "https://codestral.mistral.ai/v1", "MISTRAL_API_KEY"),  # one company's hosts
        ("mistral/codestral-latest", None, "CODESTRAL_API_KEY"),
    ],
)
def test_a_key_to_its_own_or_the_users_hosts_passes(model, base, env):
    check_key_goes_to_its_provider(LMSpec(model=model, api_base=base, api_key_env=env), "teacher")


def test_a_key_of_a_provider_known_from_litellms_table_warns_at_a_host_not_its_own():
    said = [d.why for d in key_warnings("PERPLEXITYAI_API_KEY", ["https://evil.example.com/v1"])]
    assert said == ["a host refed does not know as perplexity's (a gateway or proxy?)"]
    assert key_warnings("PERPLEXITYAI_API_KEY", ["https://api.perplexity.ai"]) == []


def test_the_decision_never_imports_what_it_need_not():
    assert key_refusal("OPENAI_API_KEY", "openai/x", [GROQ_BASE]).where == "api.groq.com"
    assert key_refusal("OPENAI_API_KEY", "openai/x", ["http://127.0.0.1:1/v1"]) is None
    assert key_refusal(None, "openai/x", [GROQ_BASE]) is None


def test_check_key_refuses_before_it_reads_the_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-read-0123456789")
    with pytest.raises(KeyProviderError):
        check_key(LMSpec(model="openai/llama-3.1-8b-instant", api_base=GROQ_BASE), "teacher")


def test_the_groq_host_with_only_the_openai_key_exits_2_before_any_request(tmp_path):
    """The attacker's trial: `openai/...` with an api_base on api.groq.com and only OPENAI_API_KEY set. Exit 2, one line
    naming the variable and the host, no run dir, and no lookup of or connection to any host (the socket spy logs
    every one the process makes)."""
    run_dir, spied = tmp_path / "run", tmp_path / "sockets.log"
    over = [
        "teacher.model='openai/llama-3.1-8b-instant'",
        f"teacher.api_base='{GROQ_BASE}'",
        f"run.dir='{run_dir}'",
        "synthesis.size=2",
    ]
    code, out, err = run_refed(
        "synthesize",
        *sets(over),
        env_extra={
            "OPENAI_API_KEY": "sk-openai-for-openai-only-0123",
            "PYTHONPATH": os.pathsep.join([str(SOCKET_SPY), *sys.path]),
            "REFED_SOCKET_LOG": str(spied),
        },
    )
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "$OPENAI_API_KEY" in err and "api.groq.com" in err and "api_key_env" in err, err
    assert 'teacher.api_key_env = "GROQ_API_KEY"' in err, err  # the fix
    assert "sk-openai-for-openai-only" not in out + err and not run_dir.exists()
    reached = spied.read_text().splitlines() if spied.exists() else []
    assert not [line for line in reached if "groq" in line], reached


def test_a_loopback_api_base_with_the_same_variable_still_runs(server_factory, tmp_path):
    srv = server_factory()
    over = [
        o for o in run_overrides(srv, tmp_path / "run", 2, **{"seeds.limit": 1}) if not o.startswith("teacher.api_key")
    ]
    over += ["teacher.model='openai/llama-3.1-8b-instant'"]
    code, _, err = run_refed("synthesize", *sets(over), env_extra={"OPENAI_API_KEY": "sk-openai-to-my-vllm-0123"})
    assert code == 0, err
    log = read_log(srv.cfg.log_path)
    assert log and all(e["key_header"] == "authorization" for e in log)  # the key went to the user's own server


def test_a_users_lm_with_the_openai_key_for_groq_is_refused_before_any_call(monkeypatch, tmp_path, server_factory):
    """A dspy.LM handed in from Python: its key found by its value (inline) or by the variable its client reads (none
    inline). Refused before the run dir is touched; the same LM on loopback runs."""
    from refed_dspy.config import load_config
    from refed_dspy.synthesis.api import synthesize

    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-for-openai-only-0123")
    srv = server_factory()
    config = load_config(None, run_overrides(srv, tmp_path / "run", 2, **{"seeds.limit": 1}))
    inline = dspy.LM("openai/llama-3.1-8b-instant", api_base=GROQ_BASE, api_key=os.environ["OPENAI_API_KEY"])
    from_env = dspy.LM("openai/llama-3.1-8b-instant", api_base=GROQ_BASE)
    for lm in (inline, from_env):
        with pytest.raises(KeyProviderError) as err:
            synthesize(config, teacher=lm)
        assert "$OPENAI_API_KEY" in str(err.value) and "api.groq.com" in str(err.value)
    assert not (tmp_path / "run").exists() and _requests(srv) == []
    mine = dspy.LM("openai/llama-3.1-8b-instant", api_base=srv.api_base, api_key=os.environ["OPENAI_API_KEY"])
    assert synthesize(config, teacher=mine)["status"] == "complete"


def test_an_inline_key_of_no_variable_or_a_placeholder_is_not_placed(monkeypatch):
    check_lm_key(dspy.LM("openai/x", api_base=GROQ_BASE, api_key="gsk-a-groq-key-held-in-no-variable"), "teacher")
    check_lm_key(dspy.LM("openai/x", api_base=GROQ_BASE, api_key="unused"), "teacher")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-0123456789abcdef")
    with pytest.raises(KeyProviderError):
        check_lm_key(dspy.LM("anthropic/claude-haiku-4-5", api_base="https://api.groq.com"), "judge")


def test_a_logged_program_loaded_with_another_providers_endpoint_is_refused(monkeypatch):
    """A logged program carries its key's variable name: loaded where REFED_API_BASE points at another provider's host,
    it refuses to bind that key."""
    import pickle

    from refed_dspy.tracking.mlflow_runs import API_BASE_VAR, logged_lm

    logged = logged_lm(LMSpec(model="openai/gpt-4o-mini", api_key_env="OPENAI_API_KEY"))
    data = pickle.dumps(logged)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-for-openai-only-0123")
    assert pickle.loads(data).kwargs["api_key"] == "sk-openai-for-openai-only-0123"  # its own endpoint: bound
    monkeypatch.setenv(API_BASE_VAR, GROQ_BASE)
    with pytest.raises(KeyProviderError) as err:
        pickle.loads(data)
    assert "api.groq.com" in str(err.value) and "$OPENAI_API_KEY" in str(err.value)
    monkeypatch.setenv(API_BASE_VAR, "http://127.0.0.1:9/v1")
    assert pickle.loads(data).kwargs["api_base"] == "http://127.0.0.1:9/v1"


def test_an_experiment_cell_on_another_providers_host_is_refused_before_any_cell_runs(server_factory, tmp_path):
    srv = server_factory()
    path = tmp_path / "exp.toml"
    path.write_text(
        f"[teacher]\napi_base = '{srv.api_base}'\napi_key_env = ''\n"
        f"[judge]\napi_base = '{srv.api_base}'\napi_key_env = ''\n"
        f"[run]\ndir = '{tmp_path / 'run'}'\nprogress = false\n"
        f"[experiment]\nout = '{tmp_path / 'exp'}'\n"
        "[experiment.grid]\n"
        f"teacher = [{{ api_base = '{srv.api_base}' }}, {{ api_base = '{GROQ_BASE}', api_key_env = 'OPENAI_API_KEY' }}]\n"
    )
    code, _, err = run_refed(
        "experiment", "--config", str(path), env_extra={"OPENAI_API_KEY": "sk-openai-for-openai-only-0123"}
    )
    assert code == 2 and len(err.strip().splitlines()) == 1 and "api.groq.com" in err, err
    assert _requests(srv) == [] and not (tmp_path / "exp").exists()


def _requests(srv) -> list[dict]:
    """What the loopback server was sent ([] when its log was never written)."""
    return read_log(srv.cfg.log_path) if Path(srv.cfg.log_path).exists() else []


def test_on_ray_the_driver_refuses_before_it_connects(tmp_path):
    """`--ray`: the driver checks the key's host before it connects to (or starts) a cluster: here connecting ends the
    process with CONNECTED, so reaching it would say so."""
    pytest.importorskip("ray")
    over = ["teacher.model='openai/llama-3.1-8b-instant'", f"teacher.api_base='{GROQ_BASE}'", f"run.dir='{tmp_path}/r'"]
    code = (
        "import sys; import refed_dspy.launch.ray.pool as pool; pool.connect = lambda *a: sys.exit('CONNECTED'); "
        f"from refed_dspy.cli import main; sys.exit(main(['synthesize', '--ray', *{sets(over)!r}]))"
    )
    env = {**os.environ, "OPENAI_API_KEY": "sk-openai-for-openai-only-0123"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 2 and "api.groq.com" in done.stderr and "$OPENAI_API_KEY" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "r").exists()


def test_an_lm_pinned_to_a_predictor_is_checked_before_the_run(server_factory, tmp_path, monkeypatch):
    """A program whose predictor holds its own LM (from Python, a file or MLflow): that LM's key is checked with the
    program, before the run dir or any endpoint is touched."""
    from refed_dspy.config import load_config
    from refed_dspy.programs import ReferenceSynthesis, RespondAndImprove
    from refed_dspy.synthesis.api import synthesize

    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-for-openai-only-0123")
    srv = server_factory()
    program = ReferenceSynthesis(respond=RespondAndImprove())
    for name, predictor in program.named_predictors():
        if name.endswith("generate"):
            predictor.lm = dspy.LM("openai/llama-3.1-8b-instant", api_base=GROQ_BASE)
    config = load_config(None, run_overrides(srv, tmp_path / "run", 2, **{"seeds.limit": 1}))
    with pytest.raises(KeyProviderError) as err:
        synthesize(config, program=program)
    assert "generate.lm" in str(err.value) and "api.groq.com" in str(err.value)
    assert _requests(srv) == [] and not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "environ, warned",
    [
        ({"HTTP_PROXY": "http://203.0.113.5:3128"}, True),  # the attacker's case: the key reached the proxy in clear
        ({"http_proxy": "203.0.113.5:3128"}, True),
        ({"HTTP_PROXY": "http://203.0.113.5:3128", "NO_PROXY": "10.1.2.3"}, False),  # not sent through it
        ({"HTTP_PROXY": "http://127.0.0.1:3128"}, False),  # a proxy on this machine
        ({"HTTP_PROXY": "https://203.0.113.5:3128"}, False),  # reached over TLS
        ({"HTTP_PROXY": "http://127.0.0.1:3128", "http_proxy": "http://203.0.113.5:3128"}, True),  # lower case wins
        ({"http_proxy": "http://203.0.113.5:3128", "NO_PROXY": "x.test", "no_proxy": "10.1.2.3"}, False),
        ({"ALL_PROXY": "http://203.0.113.5:3128", "NO_PROXY": "10.1.2.3", "no_proxy": ""}, True),  # unset by no_proxy
        ({"HTTP_PROXY": "http://203.0.113.5:3128", "http_proxy": ""}, False),
        ({"HTTP_PROXY": "http://203.0.113.5:3128", "REQUEST_METHOD": "GET"}, False),  # not taken under CGI
        ({}, False),
    ],
)
def test_a_key_sent_over_plain_http_through_a_public_proxy_is_warned(environ, warned):
    route = key_route("openai/x", "OPENAI_API_KEY", ["http://10.1.2.3:8000/v1"], environ)
    said = [w.why for w in route.warnings]
    assert said == (
        [
            "over plain http, through the proxy 203.0.113.5 (not a private address): the key crosses the network unencrypted"
        ]
        if warned
        else []
    )
