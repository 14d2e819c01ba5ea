"""LiteLLM's tables, read as data without importing LiteLLM: the providers it knows and the variables it reads each
one's key from (kept here), and its model table (prices, limits, capabilities and deprecation dates).

Deciding whose key a variable is, or which variable a model's key comes from, happens at every start of every command;
asking LiteLLM took its import (seconds). The table is LiteLLM's own (its `provider_list`, the variables its
`validate_environment` names for each provider, and the host of the api_base its `get_llm_provider` gives a keyed
provider) as of the version named below; tests/clients/test_key_names.py compares
it with the LiteLLM installed and prints the table anew when they differ, so it cannot drift unseen.

The model table is the file LiteLLM ships with every model's prices, limits and capabilities.

It is read without importing LiteLLM (that import alone takes seconds, for a table read in milliseconds); where the
file is not found, from `litellm.model_cost` (offline: LITELLM_LOCAL_MODEL_COST_MAP). `model_entry` finds a model
under the names it may have there (`table_names`): its provider prefix and a date suffix are ignored where the table
has no entry under the full name. Prices (prices.py) and a model's sampling defaults (sampling.py) are read from it;
each keeps only what it reads (the whole table is about 5 MiB in memory, and is not kept).

When a model is deprecated, by the model table: its `deprecation_date` and, where the table names one, its
`successor_model`. A run of a model whose date has passed, or comes within NOTICE_DAYS, says so in one line as it
starts, naming the model to move to; nothing stops it (a provider may serve a model past its date, or retire it
before).
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.util
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LITELLM_VERSION = "1.110.2"  # the LiteLLM the table was read from

# every provider prefix LiteLLM knows
_PROVIDER_NAMES = """
    a2a a2a_agent abliteration ai21 ai21_chat aiand aiml aiohttp_openai amazon_nova anthropic anthropic_text apertis
    assemblyai auto_router aws_polly aws_textract azure azure_ai azure_speech azure_text baseten bedrock
    bedrock_mantle bespoke bigmodel black_forest_labs bytez cerebras charity_engine chatgpt chutes clarifai
    clf_ai_gateway cloudflare codestral cognition cohere cohere_chat cometapi compactifai coralbricks cortecs cursor
    custom custom_openai darkbloom dashscope databricks databricks_agent datarobot deepgram deepinfra deepseek
    docker_model_runner dotprompt edenai elevenlabs empiriolabs empower eu_jev fal_ai featherless_ai fireworks_ai
    friendliai galadriel gdc gemini gigachat github github_copilot gradient_ai groq helicone heroku hosted_vllm
    hostinger_router huggingface humanloop hyperbolic inception inferenceapis infinity jina_ai kyma lambda_ai
    langflow langfuse langgraph laya lemonade libertai litellm_agent litellm_proxy llamafile lm_studio manus
    maritalk meta meta_llama microsoft_365_copilot milvus minimax mistral modelscope mongodb moonshot morph nace
    nadir nano-gpt nebius neosantara nlp_cloud novita nscale nvidia_nim nvidia_riva oci ollama ollama_chat oobabooga
    openai openai_like opencode_go openinfer openrouter opensearch ovhcloud parallel_ai parasail perplexity petals
    pg_vector pinstripes poe predibase prism publicai qwen_ai_platform qwencloud ragflow recraft reducto refuseless
    reka replicate runwayml s3_vectors sagemaker sagemaker_chat sagemaker_nova sail sambanova sap scaledown scaleway
    scx-ai snowflake soniox stability strands_decider streamlake synthetic tencent tensormesh
    text-completion-codestral text-completion-inception text-completion-openai together_ai topaz transcribe triton
    typesafe v0 valkey vercel_ai_gateway vertex_ai vertex_ai_beta vllm volcengine voyage wally wandb watsonx
    watsonx_text xai xiaomi_mimo xinference zai zerogpu
"""
LITELLM_PROVIDERS = frozenset(_PROVIDER_NAMES.split())

# the variables LiteLLM reads a provider's key from (names ending _KEY or _TOKEN), for the providers that have one
KEY_VARIABLES: dict[str, tuple[str, ...]] = {
    "ai21": ("AI21_API_KEY",),
    "ai21_chat": ("AI21_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY",),
    "azure": ("AZURE_API_KEY",),
    "baseten": ("BASETEN_API_KEY",),
    "bedrock": ("AWS_SECRET_ACCESS_KEY",),
    "cerebras": ("CEREBRAS_API_KEY",),
    "clf_ai_gateway": ("CLF_AI_GATEWAY_API_KEY",),
    "cloudflare": ("CLOUDFLARE_API_KEY",),
    "codestral": ("CODESTRAL_API_KEY",),
    "cohere": ("COHERE_API_KEY",),
    "dashscope": ("DASHSCOPE_API_KEY",),
    "datarobot": ("DATAROBOT_API_TOKEN",),
    "deepinfra": ("DEEPINFRA_API_KEY",),
    "deepseek": ("DEEPSEEK_API_KEY",),
    "edenai": ("EDENAI_API_KEY",),
    "featherless_ai": ("FEATHERLESS_AI_API_KEY",),
    "fireworks_ai": ("FIREWORKS_AI_API_KEY",),
    "gemini": (
        "GOOGLE_API_KEY",
        "GEMINI_API_KEY",
    ),
    "groq": ("GROQ_API_KEY",),
    "huggingface": ("HUGGINGFACE_API_KEY",),
    "inception": ("INCEPTION_API_KEY",),
    "infinity": ("INFINITY_API_KEY",),
    "mistral": ("MISTRAL_API_KEY",),
    "modelscope": ("MODELSCOPE_API_KEY",),
    "moonshot": ("MOONSHOT_API_KEY",),
    "nadir": ("NADIR_API_KEY",),
    "nebius": ("NEBIUS_API_KEY",),
    "nlp_cloud": ("NLP_CLOUD_API_KEY",),
    "novita": ("NOVITA_API_KEY",),
    "nvidia_nim": ("NVIDIA_NIM_API_KEY",),
    "openai": ("OPENAI_API_KEY",),
    "openrouter": ("OPENROUTER_API_KEY",),
    "perplexity": ("PERPLEXITYAI_API_KEY",),
    "qwen_ai_platform": ("QWEN_AI_PLATFORM_API_KEY",),
    "qwencloud": ("QWENCLOUD_API_KEY",),
    "replicate": ("REPLICATE_API_KEY",),
    "sagemaker": ("AWS_SECRET_ACCESS_KEY",),
    "tencent": ("TENCENT_API_KEY",),
    "text-completion-codestral": ("CODESTRAL_API_KEY",),
    "text-completion-inception": ("INCEPTION_API_KEY",),
    "together_ai": ("TOGETHERAI_API_KEY",),
    "vercel_ai_gateway": ("VERCEL_AI_GATEWAY_API_KEY",),
    "volcengine": ("VOLCENGINE_API_KEY",),
    "voyage": ("VOYAGE_API_KEY",),
    "wandb": ("WANDB_API_KEY",),
    "xai": ("XAI_API_KEY",),
}


# of the variables that table names, those LiteLLM's client signs requests with and never sends (AWS SigV4, for
# bedrock and sagemaker): no key, never passed as one, never let onto the wire (refed_dspy.clients.destination)
SIGNED_WITH = frozenset({"AWS_SECRET_ACCESS_KEY"})


def key_variables(provider: str) -> tuple[str, ...]:
    """The variables LiteLLM reads `provider`'s key from: its table's, less those its client only signs with."""
    return tuple(name for name in KEY_VARIABLES.get(provider, ()) if name not in SIGNED_WITH)


def signs_itself(provider: str) -> bool:
    """Whether LiteLLM's client of `provider` signs its requests with credentials it reads itself (AWS's), so that
    a key is optional: only a key variable of its own that is set (AWS_BEARER_TOKEN_BEDROCK) is sent."""
    return bool(KEY_VARIABLES.get(provider)) and not key_variables(provider)


# the host of the api_base LiteLLM sends a keyed provider's calls to when none is given (its get_llm_provider)
DEFAULT_HOSTS: dict[str, str] = {
    "ai21_chat": "api.ai21.com",
    "baseten": "inference.baseten.co",
    "cerebras": "api.cerebras.ai",
    "clf_ai_gateway": "api.clfaigateway.dev",
    "codestral": "codestral.mistral.ai",
    "dashscope": "dashscope.aliyuncs.com",
    "datarobot": "app.datarobot.com",
    "deepinfra": "api.deepinfra.com",
    "deepseek": "api.deepseek.com",
    "edenai": "api.edenai.run",
    "featherless_ai": "api.featherless.ai",
    "fireworks_ai": "api.fireworks.ai",
    "groq": "api.groq.com",
    "inception": "api.inceptionlabs.ai",
    "mistral": "api.mistral.ai",
    "modelscope": "api-inference.modelscope.cn",
    "moonshot": "api.moonshot.ai",
    "nadir": "api.getnadir.com",
    "nebius": "api.studio.nebius.ai",
    "novita": "api.novita.ai",
    "nvidia_nim": "integrate.api.nvidia.com",
    "perplexity": "api.perplexity.ai",
    "qwen_ai_platform": "dashscope.aliyuncs.com",
    "qwencloud": "dashscope-intl.aliyuncs.com",
    "tencent": "tokenhub-intl.tencentcloudmaas.com",
    "together_ai": "api.together.ai",
    "vercel_ai_gateway": "ai-gateway.vercel.sh",
    "volcengine": "ark.cn-beijing.volces.com",
    "wandb": "api.inference.wandb.ai",
    "xai": "api.x.ai",
}

MAP_FILE = "model_prices_and_context_window_backup.json"
_DATED = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|latest)$")


def litellm_models() -> dict[str, Any]:
    """LiteLLM's model table, {model name: entry}, as it ships with the LiteLLM installed: read anew at each call
    (about 20 ms), for a reader to keep what it needs of it."""
    spec = importlib.util.find_spec("litellm")  # finds the package without running it
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    path = next((Path(f) / MAP_FILE for f in folders if (Path(f) / MAP_FILE).is_file()), None)
    if path is not None:
        return json.loads(path.read_text(encoding="utf-8"))
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "true")
    import litellm

    return dict(litellm.model_cost)


def table_names(model: str) -> list[str]:
    """The names a model may have in the table: as given, without its provider prefix, its last part (a router's
    `openrouter/openai/gpt-4o-mini`), and each without a date suffix."""
    bare = model.split("/", 1)[1] if "/" in model else model
    last = model.rsplit("/", 1)[-1]
    names = [model, bare, last, _DATED.sub("", model), _DATED.sub("", bare), _DATED.sub("", last)]
    return list(dict.fromkeys(n for n in names if n))


def model_entry(model: str, table: Mapping[str, Any]) -> dict[str, Any] | None:
    """`table`'s entry for `model` (a reader's copy of the model table, keyed as it is: the first of the model's names
    it holds), None when it does not know the model."""
    for name in table_names(model):
        entry = table.get(name)
        if isinstance(entry, dict):
            return entry
    return None


NOTICE_DAYS = 30  # a deprecation date this close is said


@dataclass(frozen=True)
class Deprecation:
    """A model's deprecation by LiteLLM's table: its date, and the model to move to (None: the table names none)."""

    date: dt.date
    successor: str | None


@functools.lru_cache(maxsize=1)
def _deprecation_table() -> dict[str, Deprecation]:
    """Of each model in LiteLLM's table that has a readable deprecation_date, its Deprecation."""
    out = {}
    for name, entry in litellm_models().items():
        when = entry.get("deprecation_date") if isinstance(entry, dict) else None
        try:
            date = dt.date.fromisoformat(str(when)) if when else None
        except ValueError:  # a date the table wrote some other way: no note rather than a wrong one
            date = None
        if date is not None:
            successor = entry.get("successor_model")
            out[name] = Deprecation(date, successor if isinstance(successor, str) and successor else None)
    return out


def deprecation(model: str) -> Deprecation | None:
    """`model`'s deprecation by LiteLLM's table, None when the table gives it no date."""
    table = _deprecation_table()
    return next((table[name] for name in table_names(model) if name in table), None)


def successor_name(model: str, successor: str) -> str:
    """The successor as the config would name it: with the model's provider prefix where the table's name has none
    (`openai/gpt-5-mini` -> `openai/gpt-5.6-terra`)."""
    if "/" in successor or "/" not in model:
        return successor
    return f"{model.rsplit('/', 1)[0]}/{successor}"


def deprecation_note(model: str, role: str = "teacher", today: dt.date | None = None) -> str | None:
    """One line when `model`'s deprecation date by LiteLLM's table has passed or comes within NOTICE_DAYS of `today`,
    naming its successor where the table has one; None otherwise."""
    gone = deprecation(model)
    today = today or dt.date.today()
    if gone is None or (gone.date - today).days > NOTICE_DAYS:
        return None
    days = (gone.date - today).days
    when = (
        f"passed its deprecation date, {gone.date}, {-days} days ago"
        if days < 0
        else f"reaches its deprecation date, {gone.date}, {'today' if days == 0 else f'in {days} days'}"
    )
    move = (
        f"; its successor is {successor_name(model, gone.successor)} (set {role}.model)"
        if gone.successor
        else f"; choose another {role}.model"
    )
    return f"note: {role} {model} {when}, by LiteLLM's model table{move}"
