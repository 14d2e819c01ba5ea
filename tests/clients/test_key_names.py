"""Deciding whose key a variable is costs no LiteLLM import (it took seconds at every start with a key variable of
one's own naming), and the table that replaces LiteLLM's walk is LiteLLM's own: compared here with the LiteLLM
installed, so that it cannot drift unseen."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
import types

from refed_dspy.providers.keys import host_of
from refed_dspy.providers.litellm_table import DEFAULT_HOSTS, KEY_VARIABLES, LITELLM_PROVIDERS, LITELLM_VERSION


def _litellm_key_variables(litellm, provider: str) -> tuple[str, ...]:
    """The variables LiteLLM's validate_environment names for `provider`'s key: run on a copy of it whose environment
    is empty and whose provider lookup answers `provider` (the real lookup of some providers goes to the network)."""
    check = litellm.validate_environment
    empty = types.ModuleType("os")
    empty.__dict__.update(os.__dict__)
    empty.environ = {}
    utils = types.SimpleNamespace(get_llm_provider=lambda model, **_: (model, provider, None, None))
    copy = types.FunctionType(
        check.__code__, {**check.__globals__, "os": empty, "litellm_utils": utils}, check.__name__, check.__defaults__
    )
    copy.__kwdefaults__ = check.__kwdefaults__
    missing = copy(f"{provider}/some-model").get("missing_keys") or []
    return tuple(name for name in missing if name.endswith(("_KEY", "_TOKEN")))


def _table_text(providers: list[str], keys: dict[str, tuple[str, ...]]) -> str:
    names = textwrap.fill(" ".join(providers), 112, break_on_hyphens=False, initial_indent="    ")
    rows = "\n".join(f"    {k!r}: {v!r}," for k, v in sorted(keys.items())).replace("'", '"')
    return f'_PROVIDER_NAMES = """\n{textwrap.indent(names.strip(), "    ")}\n"""\n\nKEY_VARIABLES = {{\n{rows}\n}}'


def test_the_table_is_litellms_own():
    from importlib.metadata import version

    import litellm

    providers = sorted(str(getattr(p, "value", p)) for p in litellm.provider_list)
    keys = {p: k for p in providers if (k := _litellm_key_variables(litellm, p))}
    if set(providers) != LITELLM_PROVIDERS or keys != KEY_VARIABLES:
        raise AssertionError(
            f"refed_dspy/providers/litellm_table.py was read from LiteLLM {LITELLM_VERSION}; LiteLLM {version('litellm')} "
            f"differs (providers added {sorted(set(providers) - LITELLM_PROVIDERS)}, gone {sorted(LITELLM_PROVIDERS - set(providers))}; "
            f"key variables changed for {sorted(p for p in set(keys) | set(KEY_VARIABLES) if keys.get(p) != KEY_VARIABLES.get(p))}). "
            f"Put this in it, with LITELLM_VERSION = {version('litellm')!r}:\n{_table_text(providers, keys)}"
        )


def test_the_default_hosts_are_litellms_own():
    """The host LiteLLM sends each keyed provider's calls to when no api_base is given (its get_llm_provider's
    api_base), as DEFAULT_HOSTS has it."""
    import litellm

    found = {}
    for provider in KEY_VARIABLES:
        try:
            base = litellm.get_llm_provider(f"{provider}/some-model")[3]
        except Exception:  # noqa: BLE001 - a provider that needs more than a name to be placed has no default
            continue
        if isinstance(base, str) and base.startswith(("http://", "https://")):
            found[provider] = host_of(base)
    rows = "\n".join(f'    "{k}": "{v}",' for k, v in sorted(found.items()))
    assert found == DEFAULT_HOSTS, f"put this in refed_dspy/providers/litellm_table.py:\nDEFAULT_HOSTS = {{\n{rows}\n}}"


def test_providers_sharing_a_host_are_one_party():
    """Two providers whose own hosts are one host (LiteLLM sends both there) are one party: a key of either goes there
    (else the second's key would be refused at its own host, as another's). A pair LiteLLM adds is caught here."""
    from refed_dspy.providers.keys import one_party, provider_hosts

    hosts = provider_hosts()
    for a, b in itertools.combinations(hosts, 2):
        if set(hosts[a]) & set(hosts[b]):
            assert one_party(a, b), (a, b, set(hosts[a]) & set(hosts[b]))


_CHECKS = """
import json, sys
from refed_dspy.providers.keys import check_key, check_key_goes_to_its_provider
from refed_dspy.providers.keys import key_provider
from refed_dspy.config import LMSpec
specs = [
    LMSpec(model="openai/llama-3.1-8b-instant", api_base="http://127.0.0.1:8000/v1", api_key_env="MY_VLLM_KEY"),
    LMSpec(model="openai/gpt-4o-mini", api_key_env="OPENAI_API_KEY"),
    LMSpec(model="anthropic/claude-haiku-4-5"),
    LMSpec(model="together_ai/meta-llama/Llama-3-8b"),
    LMSpec(model="gemini/gemini-2.5-flash", api_key_env="GOOGLE_API_KEY"),
    LMSpec(model="openai/x", api_base=["http://127.0.0.1:1/v1", "http://10.0.0.2:1/v1"], api_key_env="SOME_TEAM_TOKEN"),
]
for spec in specs:
    check_key_goes_to_its_provider(spec, "teacher")
    spec.key_variable()
check_key(specs[0], "teacher")
names = [key_provider(n) for n in ("MY_VLLM_KEY", "OPENAI_API_KEY", "TOGETHERAI_API_KEY", "NOT_A_PROVIDER_TOKEN")]
print(json.dumps({"names": names, "litellm": sorted(m for m in sys.modules if m.split(".")[0] == "litellm")}))
"""


def test_the_key_checks_import_no_litellm():
    """In a fresh process: every key check of the start path, for a variable of one's own naming and for the usual
    ones, leaves no LiteLLM module in sys.modules."""
    env = {**os.environ, "MY_VLLM_KEY": "sk-my-vllm-0123456789abcdef"}
    done = subprocess.run([sys.executable, "-c", _CHECKS], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["names"] == [None, "openai", "together_ai", None]
    assert found["litellm"] == [], found["litellm"][:10]
