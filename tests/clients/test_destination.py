"""The destination check in the HTTP layer (refed_dspy.clients.destination): every request refed's LM calls send is
checked as it leaves for the keys it carries and the host it is addressed to, as the resolver reads that host, whatever
proxy carries it and whichever client sends it (refed's own transports; httpx, httpx2 and aiohttp while a refed call is
under way, and only then; requests, which none of them uses, never). A logging proxy on 127.0.0.1 (HTTP_PROXY) hands every request to the loopback server:
what it logs is what api.groq.com would have been sent, and a request it carries is answered, so a check that lets a
key through makes the run succeed and the proxy's log hold the key."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from urllib.parse import quote_plus

import pytest
from cli_helpers import run_refed, sets
from conftest import run_overrides
from logging_proxy import LoggingProxy

from refed_dspy.clients.destination import check_request, refusal_in
from refed_dspy.errors import KeyProviderError
from refed_dspy.providers.keys import folded_hosts, key_destination, key_refusal

OPENAI_KEY = "sk-openai-for-openai-only-5Q8Z"
OWN_KEY = "my-gateway-key-of-my-own-7RT2"  # in a variable of one's own: nobody's key, it goes anywhere
SOFT = "api.gr\u00adoq.com"  # a soft hyphen: invisible when pasted, dropped by the resolver


@pytest.mark.parametrize(
    "written",
    [
        SOFT,
        "\u00aapi.groq.com",
        "\uff41\uff50\uff49.groq.com",
        "api\u200b.groq.com",
        "API.GROQ.COM.",
        "api.gro\u0071.com",
        "api%2Egroq.com",  # percent-encoded, as RFC 3986 allows and a WHATWG parser (many proxies) decodes
        "api%2egroq%2Ecom",
        "%61pi.groq.com",
    ],
)
def test_a_host_is_read_as_the_resolver_reads_it(written):
    assert "api.groq.com" in folded_hosts(written)
    found = key_destination("openai", f"http://{written}/openai/v1")
    assert found.verdict == "refuse" and found.host == "api.groq.com" and found.owner == "groq"


@pytest.mark.parametrize(
    "url, verdict",
    [
        ("https://api.openai.com.evil.test/v1", "refuse"),  # openai's domain inside another one
        ("https://openai.com.example.net/v1", "refuse"),
        ("https://api.openai.com/v1", "ok"),
        ("http://api.openai.com/v1", "warn"),  # its own host, but the key crosses the network unencrypted
        ("http://198.51.100.7:8000/v1", "warn"),  # a public address over plain http
        ("https://my-gateway.example.com/v1", "warn"),  # a host refed does not know as openai's
        ("https://max.ai.example.com/v1", "warn"),  # x.ai's labels are not in it as a run: no look-alike
        ("http://127.0.0.1:8000/v1", "ok"),
        ("http://[::1]:8000/v1", "ok"),
        ("http://10.0.0.5/v1", "ok"),
        ("http://vllm:8000/v1", "ok"),
        ("http://134744072/v1", "warn"),  # 8.8.8.8 written as one number: public, over plain http
        ("http://0x08080808/v1", "warn"),
        ("http://0x7f000001:8000/v1", "ok"),  # 127.0.0.1
        ("http://2130706433:8000/v1", "ok"),
    ],
)
def test_what_a_providers_key_may_reach(url, verdict):
    assert key_destination("openai", url).verdict == verdict


@pytest.mark.parametrize("model", ["text-completion-openai/gpt-3.5-turbo-instruct", "aiohttp_openai/gpt-4o-mini"])
def test_prefixes_litellm_serves_with_openai_s_variables_are_checked_by_them(model, monkeypatch):
    """LiteLLM sends these prefixes' calls with OPENAI_API_KEY to OPENAI_BASE_URL (or OPENAI_API_BASE) when no
    api_base is given, though its key table names no variable for them: the config check reads the same variables,
    so OpenAI's key pointed at api.groq.com is refused before any call, and with no endpoint variable it goes to
    OpenAI's own."""
    from refed_dspy.config import LMSpec
    from refed_dspy.providers.keys import check_key_goes_to_its_provider, key_variable

    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert key_variable(model, None, {"OPENAI_API_KEY": OPENAI_KEY}) == "OPENAI_API_KEY"
    check_key_goes_to_its_provider(LMSpec(model=model), "teacher")
    for variable in ("OPENAI_BASE_URL", "OPENAI_API_BASE"):
        monkeypatch.setenv(variable, "https://api.groq.com/openai/v1")
        with pytest.raises(KeyProviderError) as err:
            check_key_goes_to_its_provider(LMSpec(model=model), "teacher")
        assert f"${variable}" in str(err.value) and "api.groq.com" in str(err.value)
        monkeypatch.delenv(variable)


def test_a_public_address_written_as_one_number_gets_the_plain_http_warning(monkeypatch, caplog):
    from refed_dspy.config import LMSpec
    from refed_dspy.providers.keys import check_key_goes_to_its_provider

    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    with caplog.at_level(logging.WARNING, logger="refed_dspy.providers.keys"):
        check_key_goes_to_its_provider(LMSpec(model="openai/x", api_base="http://134744072/v1"), "teacher")
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "134744072 (8.8.8.8)" in said[0] and "plain http" in said[0], said


def test_the_config_check_reads_the_environment_and_the_documented_variables(monkeypatch):
    from refed_dspy.config import LMSpec
    from refed_dspy.providers.keys import check_key_goes_to_its_provider

    with pytest.raises(KeyProviderError) as err:  # no api_base: OPENAI_BASE_URL is where LiteLLM sends the key
        monkeypatch.setenv("OPENAI_BASE_URL", "https://api.groq.com/openai/v1")
        check_key_goes_to_its_provider(LMSpec(model="openai/llama-3.1-8b-instant"), "teacher")
    assert "$OPENAI_BASE_URL" in str(err.value) and "api.groq.com" in str(err.value)
    monkeypatch.delenv("OPENAI_BASE_URL")
    for env in ("AZURE_OPENAI_API_KEY", "TOGETHER_API_KEY", "CO_API_KEY", "HF_TOKEN", "ANTHROPIC_AUTH_TOKEN"):
        assert key_refusal(env, "openai/x", ["https://api.groq.com/openai/v1"]) is not None, env
    assert key_refusal("FIREWORKS_API_KEY", "openai/x", []) is not None  # to api.openai.com
    assert key_refusal("MY_OWN_KEY", "openai/x", ["https://api.groq.com/openai/v1"]) is None
    assert key_refusal("OPENAI_API_KEY", "openai/x", ["https://api.openai.com.evil.test/v1"]) is not None


def test_a_warning_is_one_line_once(monkeypatch, caplog):
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    with caplog.at_level(logging.WARNING, logger="refed_dspy.providers.keys"):  # warn_once, said once a process
        for _ in range(3):
            check_request("https://gw-once.example.com/v1/chat/completions", [f"Bearer {OPENAI_KEY}"])
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "$OPENAI_API_KEY" in said[0] and "gw-once.example.com" in said[0], said
    assert OPENAI_KEY not in said[0]


def test_a_basic_credential_and_a_query_key_are_read_too(monkeypatch):
    import base64

    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    basic = "Basic " + base64.b64encode(f"user:{OPENAI_KEY}".encode()).decode()
    with pytest.raises(KeyProviderError):
        check_request("http://api.groq.com/v1", [basic])
    with pytest.raises(KeyProviderError):
        check_request(f"http://api.groq.com/v1?key={OPENAI_KEY}", [])
    check_request("http://api.groq.com/v1", ["Bearer some-other-value-entirely"])  # no held key: sent


@pytest.mark.parametrize(
    "env",
    [
        "WATSONX_APIKEY",
        "AZURE_AD_TOKEN",
        "LLAMA_API_KEY",
        "AWS_BEARER_TOKEN_BEDROCK",
        "SNOWFLAKE_JWT",
        "ANTHROPIC_AWS_API_KEY",
    ],
)
def test_variables_litellm_reads_a_provider_s_credential_from_are_that_provider_s(monkeypatch, env):
    # an attacker sent each of these to api.groq.com, exit 0: neither LiteLLM's key table nor a key's usual name
    # placed them, so the checks counted them as nobody's (and the last two were not held at all)
    monkeypatch.setenv(env, "a-credential-of-its-provider-7Q2W9E4R")
    assert key_refusal(env, "openai/x", ["https://api.groq.com/openai/v1"]) is not None, env
    with pytest.raises(KeyProviderError, match=f"\\${env}"):
        check_request(
            "http://api.groq.com/openai/v1/chat/completions", ["Bearer a-credential-of-its-provider-7Q2W9E4R"]
        )


def test_the_secret_aws_signs_with_is_never_a_key_and_never_sent(monkeypatch):
    # a bedrock model was given $AWS_SECRET_ACCESS_KEY as its api_key, which LiteLLM sends as a Bearer token on every
    # request (an attacker's proxy logged it): now the client signs with it (SigV4) and it leaves for no host at all
    from refed_dspy.config import LMSpec
    from refed_dspy.providers.keys import check_key, key_variable

    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEEXAMPLE12")
    for model in ("bedrock/anthropic.claude-3-haiku-20240307-v1:0", "sagemaker/my-endpoint"):
        assert key_variable(model, None, os.environ) is None, model
        assert check_key(LMSpec(model=model), "teacher") is None, model  # no key asked for, none passed
    with pytest.raises(KeyProviderError, match="never sent as a key"):  # named as the key: refused before any call
        check_key(LMSpec(model="bedrock/x", api_key_env="AWS_SECRET_ACCESS_KEY"), "teacher")
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "ABSK-a-bedrock-api-key-0123456789")  # bedrock's own API key
    assert (
        key_variable("bedrock/anthropic.claude-3-haiku-20240307-v1:0", None, os.environ) == "AWS_BEARER_TOKEN_BEDROCK"
    )
    for url in ("https://bedrock-runtime.us-east-1.amazonaws.com/model/x/converse", "http://api.groq.com/v1"):
        with pytest.raises(KeyProviderError, match="AWS_SECRET_ACCESS_KEY.*never sent"):
            check_request(url, [f"Bearer {secret}"])


def test_a_percent_encoded_host_is_refused_as_it_leaves(monkeypatch):
    """What a user's own LM or a key held only in a header sends toward a percent-encoded host meets the check in the
    HTTP layer: read as a WHATWG parser (a proxy) reads it, it is another provider's."""
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-for-anthropic-only-9K2P")
    with pytest.raises(KeyProviderError, match="api.groq.com"):
        check_request("http://api%2Egroq.com/openai/v1/chat/completions", [f"Bearer {OPENAI_KEY}"])
    with pytest.raises(KeyProviderError, match="api.openai.com"):
        check_request("https://api%2Eopenai.com/v1/messages", ["sk-ant-for-anthropic-only-9K2P"])


@pytest.fixture
def proxy(server_factory, monkeypatch):
    srv = server_factory()
    found = LoggingProxy(srv.api_base)
    monkeypatch.setenv("HTTP_PROXY", found.url)
    monkeypatch.setenv("http_proxy", found.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("MY_GATEWAY_KEY", OWN_KEY)
    yield found
    found.close()


GROQ_CHAT = "http://api.groq.com/openai/v1/chat/completions"
BODY = {"model": "llama-3.1-8b-instant", "messages": [{"role": "user", "content": "hi"}]}


def _httpx(module_name: str, key: str) -> int:
    module = __import__(module_name)
    with module.Client(trust_env=True) as client:
        return client.post(GROQ_CHAT, json=BODY, headers={"Authorization": f"Bearer {key}"}).status_code


def _httpx_async(module_name: str, key: str) -> int:
    module = __import__(module_name)

    async def go() -> int:
        async with module.AsyncClient(trust_env=True) as client:
            reply = await client.post(GROQ_CHAT, json=BODY, headers={"Authorization": f"Bearer {key}"})
            return reply.status_code

    return asyncio.run(go())


def _aiohttp(key: str) -> int:
    import aiohttp

    async def go() -> int:
        headers = {"Authorization": f"Bearer {key}"}
        async with (
            aiohttp.ClientSession(trust_env=True) as session,
            session.post(GROQ_CHAT, json=BODY, headers=headers) as reply,
        ):
            return reply.status

    return asyncio.run(go())


CLIENTS = {
    "httpx": lambda key: _httpx("httpx", key),
    "httpx-async": lambda key: _httpx_async("httpx", key),
    "httpx2": lambda key: _httpx("httpx2", key),
    "httpx2-async": lambda key: _httpx_async("httpx2", key),
    "aiohttp": _aiohttp,
}


@pytest.mark.parametrize("client", list(CLIENTS))
def test_every_http_client_refuses_the_key_while_a_refed_call_is_under_way(proxy, client):
    """OpenAI's key, sent to api.groq.com through the proxy while a refed call is under way (`checking`: a model DSPy
    serves through LiteLLM sends with these clients): refused in the client, before a byte leaves. The same request
    with a key of one's own is carried (the path works: the check is what stops it). Outside refed's calls the
    request is the user's own, unread: the proxy carries it."""
    from refed_dspy.clients.destination import checking

    with checking(), pytest.raises(Exception) as err:
        CLIENTS[client](OPENAI_KEY)
    assert refusal_in(err.value) is not None, repr(err.value)
    assert proxy.holding(OPENAI_KEY) == [] and proxy.carried == [], proxy.dump()
    with checking():
        assert CLIENTS[client](OWN_KEY) == 200
    assert [c.host for c in proxy.holding(OWN_KEY)] == ["api.groq.com"]
    assert CLIENTS[client](OPENAI_KEY) == 200  # the user's own request, outside refed's calls
    assert [c.host for c in proxy.holding(OPENAI_KEY)] == ["api.groq.com"]


WATSONX_KEY = "wx-for-ibm-only-7Q3Z8M2K"
SIGN_IN = "http://api.groq.com/identity/token"  # where a WATSONX_IAM_URL set wrong would send the token exchange


def _posts(client: str, form: dict[str, str]) -> int:
    """A request with `form` in its body (no key header), as LiteLLM posts watsonx's key for a token."""
    if client.startswith("httpx"):
        with __import__(client).Client(trust_env=True) as http:
            return http.post(SIGN_IN, data=form).status_code
    import aiohttp

    async def go() -> int:
        async with aiohttp.ClientSession(trust_env=True) as session, session.post(SIGN_IN, json=form) as reply:
            return reply.status

    return asyncio.run(go())


@pytest.mark.parametrize("client", ["httpx", "httpx2", "aiohttp"])
def test_a_key_in_a_request_s_body_is_read_too(proxy, monkeypatch, client):
    """watsonx's key posted in a body (a form, JSON) to api.groq.com while a refed call is under way: refused before a
    byte leaves (an attacker helper saw LiteLLM's sign-in request carry it there, WATSONX_IAM_URL set wrong, the run
    ending 0: only headers and URL were read). A body with a key of one's own is carried."""
    from refed_dspy.clients.destination import checking

    monkeypatch.setenv("WATSONX_API_KEY", WATSONX_KEY)
    with checking(), pytest.raises(Exception) as err:
        _posts(client, {"grant_type": "urn:ibm:params:oauth:grant-type:apikey", "apikey": WATSONX_KEY})
    assert refusal_in(err.value) is not None, repr(err.value)
    assert proxy.holding(WATSONX_KEY) == [] and proxy.carried == [], proxy.dump()
    with checking():
        _posts(client, {"apikey": OWN_KEY})
    assert [c.host for c in proxy.holding(OWN_KEY)] == ["api.groq.com"]


def test_a_key_in_a_body_is_found_as_each_encoding_spells_it(monkeypatch):
    """As is, JSON-escaped and form-encoded (a key with characters a form encodes); a long body with no key passes."""
    key = "wx/for+ibm=only\\7Q3Z8M2K"
    monkeypatch.setenv("WATSONX_API_KEY", key)
    for body in (key, json.dumps({"apikey": key}), f"apikey={quote_plus(key)}"):
        with pytest.raises(KeyProviderError, match="WATSONX_API_KEY"):
            check_request(SIGN_IN, [], body.encode())
    check_request(SIGN_IN, [], json.dumps({"content": "lorem ipsum " * 5000}).encode())


LEFT_AS_IT_IS = """
import json, sys
import aiohttp.client_reqrep, dspy, httpx, httpx2, requests
from dspy._vendor.lm15.transports import StdlibAsyncTransport, StdlibTransport

def methods():
    found = {"requests.Session.send": requests.Session.send, "aiohttp.ClientRequest.send":
             aiohttp.client_reqrep.ClientRequest.send, "lm15.StdlibTransport.stream": StdlibTransport.stream,
             "lm15.StdlibAsyncTransport.stream": StdlibAsyncTransport.stream, "dspy.BaseLM.__call__":
             dspy.BaseLM.__call__, "dspy.BaseLM.acall": dspy.BaseLM.acall}
    for module in (httpx, httpx2):
        for cls in (module.Client, module.AsyncClient):
            for name in ("_send_single_request", "send"):
                found[f"{module.__name__}.{cls.__name__}.{name}"] = getattr(cls, name)
    return found

def changed(before):
    now = methods()
    return sorted(name for name in before if now[name] is not before[name])

before = methods()
import refed_dspy
from refed_dspy.config import load_config
said = {"import": changed(before)}
summary = refed_dspy.synthesize(load_config(None, json.loads(sys.argv[1])))
said["synthesize"] = changed(before)
result = refed_dspy.optimize(load_config(None, json.loads(sys.argv[2])))
said["optimize"] = changed(before)
print(json.dumps([summary["status"], result.optimizer, said]))
"""


def test_refed_leaves_every_http_client_and_dspy_as_they_are(server_factory, tmp_path):
    """A process that imports refed and runs a synthesis and an optimization: every method of httpx, httpx2, requests,
    aiohttp, DSPy's own client (lm15) and dspy.BaseLM's call methods is the same object after the import and after each
    call returns, so a request the user's own code sends outside refed's calls is theirs, unread. (The check is in the
    HTTP clients while a refed call is under way, and only then; until 2026-11-30 it was put there at the first call,
    for good.)"""
    srv = server_factory()
    over = run_overrides(srv, tmp_path / "run", 2, **{"seeds.limit": 1})
    tune = run_overrides(srv, tmp_path / "opt-run", 10, **{"optimize.out": f"'{tmp_path / 'opt'}'"})
    tune += [f"judge.api_base='{srv.api_base}'", "judge.api_key_env=''", "optimize.optimizer='bootstrap'"]
    tune += ["optimize.n_train=4", "optimize.n_val=3", "optimize.num_threads=2"]
    done = subprocess.run(
        [sys.executable, "-c", LEFT_AS_IT_IS, json.dumps(over), json.dumps(tune)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    status, optimized, said = json.loads(done.stdout.strip().splitlines()[-1])
    assert (status, said) == ("complete", {"import": [], "synthesize": [], "optimize": []}), (status, said)
    assert optimized == "bootstrap", optimized


def test_a_model_dspy_serves_through_litellm_is_checked_during_its_call(proxy, monkeypatch):
    """A user's dspy.LM with a client setting lm15 cannot carry (`organization`) keeps DSPy's engine, which sends through
    LiteLLM and the openai SDK (httpx), reading OPENAI_BASE_URL. With the config's check taken out (an entrance nobody thought
    of), its call as a run holds it is refused in httpx before a byte leaves; once the call returns, httpx's method is
    its own again."""
    import dspy
    import httpx

    from refed_dspy.clients.lm import bounded
    from refed_dspy.providers import keys

    monkeypatch.setattr(keys, "key_refusal", lambda *a: None)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://api.groq.com/openai/v1")
    own = httpx.Client._send_single_request
    users = dspy.LM("openai/llama-3.1-8b-instant", api_key=OPENAI_KEY, num_retries=0, cache=False, organization="o")
    lm = bounded(users, "teacher")
    assert lm.engine == "auto"  # DSPy's engine: LiteLLM
    with pytest.raises(Exception) as err:
        lm("hi")
    assert refusal_in(err.value) is not None, repr(err.value)
    assert proxy.carried == [], proxy.dump()
    assert httpx.Client._send_single_request is own


HF_TOKEN = "hf_for-huggingface-only-4T7X"
SCORER_FROM_THE_HUB = """
import sys
from urllib.parse import quote_plus
from refed_dspy.clients.destination import refusal_in
from refed_dspy.scoring.local import LocalModel

try:
    LocalModel("HuggingFaceTB/SmolLM2-360M-Instruct").load()
    print("loaded")
except Exception as err:
    print("refused" if refusal_in(err) is not None or "refused to send" in str(err) else "failed: " + str(err)[:300])
"""


def test_a_model_loaded_from_the_hub_is_checked(proxy, tmp_path):
    """A scorer (or a student) named by its Hub id is downloaded with $HF_TOKEN, sent where HF_ENDPOINT says: toward
    api.groq.com it is refused before a byte leaves, whether or not an LM call came first in the process (an attacker
    helper found it sent once the check no longer stayed in the clients after a call; `refed score` alone sent it
    before that too)."""
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env |= {"HF_TOKEN": HF_TOKEN, "HF_ENDPOINT": "http://api.groq.com", "HF_HOME": str(tmp_path / "hf")}
    done = subprocess.run(
        [sys.executable, "-c", SCORER_FROM_THE_HUB], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "refused", done.stdout[-2000:]
    assert proxy.holding(HF_TOKEN) == [], proxy.dump()


def test_what_a_run_s_work_asks_around_its_calls_is_checked(proxy):
    """Within a piece of a run's work or an optimization's calls (`within` a ledger scope), a request made outside any
    LM call (DSPy's JSONAdapter asks LiteLLM a model's capabilities before its call; for an Ollama model LiteLLM posts
    to $OLLAMA_API_BASE with $OLLAMA_API_KEY) is checked too; outside it, the user's own request is carried."""
    from refed_dspy.clients.lm_routing import LedgerScope, within

    with within(LedgerScope()), pytest.raises(Exception) as err:
        CLIENTS["httpx"](OPENAI_KEY)
    assert refusal_in(err.value) is not None and proxy.carried == [], proxy.dump()
    assert CLIENTS["httpx"](OPENAI_KEY) == 200


def test_a_wrapper_another_library_puts_over_ours_is_kept():
    """Another library that wraps httpx's method while a refed call is under way (functools.wraps copies our wrapper's
    attributes onto its own) keeps its wrapper when the call ends: ours stays under it, idle; when that library takes
    its wrapper away, ours is not put in twice and the method is httpx's own again after the next call."""
    import functools

    import httpx

    from refed_dspy.clients import destination
    from refed_dspy.clients.destination import checking

    own = httpx.Client._send_single_request
    try:
        with checking():
            ours = httpx.Client._send_single_request

            @functools.wraps(ours)
            def theirs(*args, **kwargs):
                return ours(*args, **kwargs)

            httpx.Client._send_single_request = theirs
        assert httpx.Client._send_single_request is theirs
        httpx.Client._send_single_request = ours  # they take theirs away
        with checking():
            assert httpx.Client._send_single_request is ours
        assert httpx.Client._send_single_request is own
    finally:
        httpx.Client._send_single_request = own
        destination._replaced.pop((httpx.Client, "_send_single_request"), None)


def test_a_logged_program_s_lm_is_checked_where_it_is_loaded(proxy, monkeypatch):
    """A logged program's LM, loaded and called outside refed's work (an MLflow model serving it), an `aiohttp_openai/`
    model (LiteLLM sends it to OPENAI_BASE_URL with OPENAI_API_KEY), with OPENAI_BASE_URL set toward api.groq.com only
    after it loaded: its load-time check passes, and each call is a `checking` block through DSPy's callback hook, so
    its request is refused before a byte leaves (an attacker helper saw it carried once the check no longer stayed in
    the clients); after the call aiohttp's method is its own again."""
    import pickle

    import aiohttp.client_reqrep
    import dspy

    from refed_dspy.config.lm import LMSpec
    from refed_dspy.tracking.mlflow_runs import logged_lm

    own = aiohttp.client_reqrep.ClientRequest.send
    lm = pickle.loads(pickle.dumps(logged_lm(LMSpec(model="aiohttp_openai/gpt-4o-mini", api_key_env="OPENAI_API_KEY"))))
    monkeypatch.setenv("OPENAI_BASE_URL", "http://api.groq.com/openai/v1")
    with dspy.context(lm=lm, adapter=dspy.ChatAdapter()), pytest.raises(Exception) as err:
        dspy.Predict("question -> answer")(question="hi")
    assert refusal_in(err.value) is not None or "refused to send" in str(err.value), repr(err.value)
    assert proxy.holding(OPENAI_KEY) == [], proxy.dump()
    assert aiohttp.client_reqrep.ClientRequest.send is own


def _synthesize_args(srv, tmp_path, **more) -> list[str]:
    over = [
        o for o in run_overrides(srv, tmp_path / "run", 2, **{"seeds.limit": 1}) if not o.startswith("teacher.api_")
    ]
    over += ["teacher.model='openai/llama-3.1-8b-instant'", *(f"{k}={v}" for k, v in more.items())]
    return ["synthesize", *sets(over)]


@pytest.mark.parametrize(
    "more, env",
    [
        ({"teacher.api_base": f"'http://{SOFT}/openai/v1'"}, {}),
        ({"teacher.api_base": "'http://\u00aapi.groq.com/openai/v1'"}, {}),
        ({}, {"OPENAI_BASE_URL": "http://api.groq.com/openai/v1"}),
        ({}, {"OPENAI_API_BASE": "http://api.groq.com/openai/v1"}),
        ({"teacher.api_base": "'http://api%2Egroq.com/openai/v1'"}, {}),
        ({}, {"OPENAI_BASE_URL": "http://api%2Egroq.com/openai/v1"}),
        (
            {"teacher.api_base": "'http://api.groq.com/openai/v1'", "teacher.api_key_env": "'AZURE_OPENAI_API_KEY'"},
            {"AZURE_OPENAI_API_KEY": "azure-key-for-azure-only-3M9W"},
        ),
    ],
    ids=[
        "soft-hyphen",
        "ordinal-a",
        "OPENAI_BASE_URL",
        "OPENAI_API_BASE",
        "percent-encoded",
        "percent-encoded-OPENAI_BASE_URL",
        "AZURE_OPENAI_API_KEY",
    ],
)
def test_the_attackers_routes_exit_2_and_no_request_carries_the_key(proxy, server_factory, tmp_path, more, env):
    """Only the variable named set, a logging proxy carrying every request: exit 2 in one line naming the variable
    and api.groq.com, no run dir, and no request at the proxy, so none carried the key."""
    srv = server_factory()
    extra = {"HTTP_PROXY": proxy.url, "http_proxy": proxy.url, "OPENAI_API_KEY": OPENAI_KEY, **env}
    code, out, err = run_refed(*_synthesize_args(srv, tmp_path, **more), env_extra=extra)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "api.groq.com" in err and "OPENAI_API_KEY" in err, err  # the variable (AZURE_OPENAI_API_KEY too)
    assert proxy.carried == [] and not (tmp_path / "run").exists(), proxy.dump()
    for value in extra.values():
        assert value not in out + err or value.startswith("http")


@pytest.mark.parametrize(
    "model, more, env",
    [
        ("anyscale/meta-llama/x", {"teacher.api_base": "'http://api.groq.com/openai/v1'"}, "ANYSCALE_API_KEY"),
        ("gigachat/GigaChat", {"teacher.api_base": "'http://api.groq.com/openai/v1'"}, "GIGACHAT_ACCESS_TOKEN"),
        (
            "gigachat/GigaChat",
            {"teacher.extra.gigachat_auth_url": "'http://api.groq.com/oauth'"},
            "GIGACHAT_CREDENTIALS",
        ),
        *(
            ("groq/llama-3.1-8b-instant", {"teacher.api_key_env": f"'{env}'"}, env)
            for env in (
                "YOUCOM_API_KEY",
                "RUNWAYML_API_SECRET",
                "AZURE_CLIENT_SECRET",
                "AZURE_PASSWORD",
                "VERTEXAI_CREDENTIALS",
                "VERCEL_OIDC_TOKEN",
            )
        ),
    ],
    ids=[
        "anyscale",
        "gigachat-token",
        "gigachat-credentials",
        *("youcom", "runwayml", "azure-entra", "azure-password", "vertex-json", "vercel-oidc"),
    ],
)
def test_a_credential_litellm_reads_that_its_key_table_does_not_name_stays_with_its_provider(
    proxy, server_factory, tmp_path, model, more, env
):
    """An attacker's runs sent $ANYSCALE_API_KEY (anyscale/ is routed by LiteLLM, not in its provider list) and
    GigaChat's access token and credentials (read by LiteLLM whatever key it is given) to api.groq.com: no owner was
    known for them, so they went anywhere. Now each is its provider's: exit 2 in one line naming the variable, and no
    request at the proxy carried it (the credentials are refused as the request carrying them is sent)."""
    secret = f"{env.lower()}-for-its-provider-only-8Q4R"
    srv = server_factory()
    extra = {"HTTP_PROXY": proxy.url, "http_proxy": proxy.url, env: secret}
    args = [*_synthesize_args(srv, tmp_path, **{"teacher.model": f"'{model}'", **more})]
    if env != "ANYSCALE_API_KEY" and "teacher.api_key_env" not in more:
        args += ["--set", "teacher.api_key_env=''"]
    code, out, err = run_refed(*args, env_extra=extra)
    lines = err.strip().splitlines()
    assert code == 2 and "Traceback" not in err and env in lines[-1] and "api.groq.com" in lines[-1], err
    assert len(lines) == 1 or env == "GIGACHAT_CREDENTIALS", err  # that one is refused as its token fetch is sent
    assert secret not in out + err and not [r for r in proxy.carried if secret in json.dumps(r)], proxy.dump()


DATABRICKS_SECRET = "dbsecret-for-databricks-only-5T8Y2U"


def test_a_credential_its_client_sends_by_itself_is_checked_before_any_call(proxy, server_factory, tmp_path):
    """LiteLLM posts $DATABRICKS_CLIENT_SECRET (Basic auth, with requests, which refed leaves alone) to the model's
    endpoint whenever it and $DATABRICKS_CLIENT_ID are set, whatever key the config names: an attacker's run with
    api_key_env = "" and api_base on api.groq.com sent it there four times, exit 1. Now exit 2 in one line naming the
    variable and the host, no request at the proxy; a user's dspy.LM with the same endpoint is refused as it is
    handed in, and the model's own workspace takes it; without its client id the secret is never sent, nor refused."""
    import dspy

    from refed_dspy.clients.destination import check_lm_key

    srv = server_factory()
    model = "databricks/databricks-meta-llama-3-3-70b-instruct"
    more = {"teacher.model": f"'{model}'", "teacher.api_base": "'http://api.groq.com/openai/v1'"}
    extra = {"HTTP_PROXY": proxy.url, "http_proxy": proxy.url, "DATABRICKS_CLIENT_ID": "my-service-principal"}
    extra["DATABRICKS_CLIENT_SECRET"] = DATABRICKS_SECRET
    args = [*_synthesize_args(srv, tmp_path, **more), "--set", "teacher.api_key_env=''"]
    code, out, err = run_refed(*args, env_extra=extra)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "DATABRICKS_CLIENT_SECRET" in err and "api.groq.com" in err and DATABRICKS_SECRET not in out + err, err
    assert proxy.carried == [] and not (tmp_path / "run").exists(), proxy.dump()
    with pytest.MonkeyPatch.context() as env:
        groq = dspy.LM(model, api_base="https://api.groq.com/openai/v1")
        env.delenv("DATABRICKS_CLIENT_ID", raising=False)
        env.setenv("DATABRICKS_CLIENT_SECRET", DATABRICKS_SECRET)
        check_lm_key(groq, "teacher")  # without its client id LiteLLM never sends it (a reviewer's false refusal)
        env.setenv("DATABRICKS_CLIENT_ID", "my-service-principal")
        with pytest.raises(KeyProviderError, match="DATABRICKS_CLIENT_SECRET"):
            check_lm_key(groq, "teacher")
        check_lm_key(dspy.LM(model, api_base="https://adb-1234.5.azuredatabricks.net/serving-endpoints"), "teacher")
        # an agent's fetch goes to $DATABRICKS_HOST (a reviewer's run sent it to api.groq.com so, exit 1)
        from refed_dspy.config import LMSpec
        from refed_dspy.providers.keys import check_key_goes_to_its_provider

        env.setenv("DATABRICKS_HOST", "http://api.groq.com")
        with pytest.raises(KeyProviderError, match="DATABRICKS_CLIENT_SECRET.*api.groq.com"):
            check_key_goes_to_its_provider(LMSpec(model="databricks_agent/my-agent", api_key_env=""), "teacher")
        env.setenv("DATABRICKS_HOST", "https://adb-1234.5.azuredatabricks.net")
        check_key_goes_to_its_provider(LMSpec(model="databricks_agent/my-agent", api_key_env=""), "teacher")


@pytest.mark.parametrize("variable", ["OPENAI_API_KEY", "AZURE_OPENAI_API_KEY", "HF_TOKEN"])
def test_a_loopback_api_base_takes_any_of_these_variables(server_factory, tmp_path, variable):
    srv = server_factory()
    args = _synthesize_args(srv, tmp_path, **{"teacher.api_base": f"'{srv.api_base}'"})
    args += ["--set", f"teacher.api_key_env='{variable}'"]
    code, _, err = run_refed(*args, env_extra={variable: "a-key-for-my-own-server-8KQ"})
    assert code == 0, err


def test_the_http_layer_stops_what_the_config_check_missed(proxy, server_factory, tmp_path, monkeypatch):
    """With the config's check taken out (as an entrance nobody thought of would be), the run's own requests meet the
    check in the HTTP layer: the run stops with the refusal (KeyProviderError: exit 2), the proxy holds no key."""
    from refed_dspy.config import load_config
    from refed_dspy.providers import keys
    from refed_dspy.synthesis.api import synthesize

    monkeypatch.setattr(keys, "key_refusal", lambda *a: None)  # in the one decision of the config's check (key_route)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://api.groq.com/openai/v1")
    srv = server_factory()
    over = [
        o for o in run_overrides(srv, tmp_path / "run", 2, **{"seeds.limit": 1}) if not o.startswith("teacher.api_")
    ]
    over += ["teacher.model='openai/llama-3.1-8b-instant'", "teacher.api_key_env='OPENAI_API_KEY'"]
    with pytest.raises(KeyProviderError) as err:
        synthesize(load_config(None, over))
    assert "api.groq.com" in str(err.value) and "$OPENAI_API_KEY" in str(err.value)
    assert proxy.holding(OPENAI_KEY) == [], proxy.dump()


WITHOUT_THE_PROCESS_CHECK = """
import asyncio, json, os, sys
import refed_dspy.clients.destination as destination
import refed_dspy.providers.keys as keys

destination._CLIENTS.clear()  # no HTTP client of the process checks, even in a call: only refed's own clients
keys.key_refusal = lambda *a: None  # nor the config's check (an entrance nobody thought of)
if sys.argv[1] == "unchecked":  # the control: refed's own clients let every request through
    destination.check_request = lambda *a: None
import dspy
from refed_dspy.clients.lm import bounded, build_lm
from refed_dspy.config import LMSpec
from refed_dspy.launch.batch.api import client_for_spec

spec = LMSpec(model="openai/llama-3.1-8b-instant", api_key_env="OPENAI_API_KEY", num_retries=0)
batches = client_for_spec(
    spec.model_copy(update={"api_base": "http://api.groq.com/openai/v1"}), os.environ["OPENAI_API_KEY"], "teacher"
)
calls = {"batch client": lambda: asyncio.run(batches.status("batch_1"))}
lms = {
    "stage": build_lm(spec, num_retries=0, max_connections=8),  # a stage's: on engines of its own
    "built": build_lm(spec, num_retries=0),  # an optimization's, a metric's judge: on engines of its own too
    # a user's dspy.LM handed in (told no endpoint: DSPy's own client reads OPENAI_BASE_URL), as a run holds it
    "handed": bounded(dspy.LM(spec.model, api_key=os.environ["OPENAI_API_KEY"], num_retries=0), "teacher"),
}
for name, lm in lms.items():
    lm.cache = False
    calls[f"{name} sync"] = lambda lm=lm: lm("hi")
    calls[f"{name} async"] = lambda lm=lm: asyncio.run(lm.acall("hi"))
said = {}
for name, call in calls.items():
    try:
        call()
        said[name] = "sent"
    except Exception as err:
        said[name] = "refused" if destination.refusal_in(err) else "sent: " + repr(err)[:200]
print(json.dumps(said))
"""


@pytest.mark.parametrize("check", ["on", "off"])
def test_refed_s_own_clients_refuse_what_nothing_else_checked(proxy, check):
    """With OPENAI_BASE_URL pointing OpenAI's key at api.groq.com and neither the process's HTTP clients nor the config
    checking: a stage's LM, an LM build_lm makes for anything else, a user's dspy.LM as a run holds it (all on engines
    of their own), and a batch client: the LMs' own transports and the batch client's request hook refuse each request
    (sync and async), and the proxy carries none. The control, their check taken out: the same seven requests reach
    the proxy with the key."""
    env = {**os.environ, "OPENAI_BASE_URL": "http://api.groq.com/openai/v1"}
    way = "checked" if check == "on" else "unchecked"
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_THE_PROCESS_CHECK, way], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    said = json.loads(done.stdout.strip().splitlines()[-1])
    if check == "on":
        assert set(said.values()) == {"refused"} and len(said) == 7, said
        assert proxy.carried == [], proxy.dump()
    else:
        assert "refused" not in said.values(), said
        assert {c.host for c in proxy.holding(OPENAI_KEY)} == {"api.groq.com"} and len(proxy.carried) == 7


def test_no_key_in_the_environment_slows_nothing_down():
    """A request carrying no held key is sent as it is (the check reads nothing it need not)."""
    os.environ.pop("REFED_NOT_A_KEY", None)
    check_request("http://api.groq.com/v1", ["application/json", "Bearer not-held-by-anyone"])


def test_the_token_hf_auth_login_stored_is_checked_as_hf_token_is(monkeypatch, tmp_path):
    # with HF_TOKEN unset, huggingface_hub sends the token `hf auth login` stored in its token file: it was held by
    # nobody, so an HF_ENDPOINT on api.openai.com carried it (an attacker's proxy logged it)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_TOKEN_PATH", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    (tmp_path / "token").write_text("hf_LOGINstoredTOKENabcdefghijklmnop012345\n")
    with pytest.raises(KeyProviderError, match="the Hugging Face token file .huggingface's key. to api.openai.com"):
        check_request(
            "http://api.openai.com/datasets/x/y/resolve/main/README.md",
            ["Bearer hf_LOGINstoredTOKENabcdefghijklmnop012345"],
        )
    check_request(
        "https://huggingface.co/datasets/x/y/resolve/main/README.md",
        ["Bearer hf_LOGINstoredTOKENabcdefghijklmnop012345"],
    )


@pytest.mark.parametrize("around", [" ", "\r", "\u00a0", "\n"])
def test_a_key_read_with_whitespace_around_it_is_checked_as_it_is_sent(monkeypatch, around):
    # huggingface_hub and LiteLLM strip some keys before they send them: a key as a CRLF .env file gives it was held
    # with its whitespace, and the stripped one a header carried was held by nobody
    monkeypatch.setenv("HF_TOKEN", f"hf_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ab{around}")
    with pytest.raises(KeyProviderError, match="HF_TOKEN"):
        check_request("http://api.openai.com/datasets/x", ["Bearer hf_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ab"])
