"""Azure OpenAI (a deployment of an OpenAI model in a resource of one's own), and Azure AI.

Azure OpenAI has no endpoint refed could default to: `api_base` names the resource (https://<name>.openai.azure.com)
and `api_version` the API version. Its structured outputs, batch API and prompt caching are OpenAI's; its batch API
lives under the resource's /openai path, takes the key in an api-key header and the version in the query, and its
lines name /chat/completions. Its service tiers (flex, priority) are asked for and answered as OpenAI's. DSPy reaches it through LiteLLM, whose requests a batch transport cannot carry, so a
batch request's body is built as for OpenAI (the deployment as the model) and is never sent online.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from refed_dspy.providers.base import PrefixCache, Provider
from refed_dspy.providers.openai import FILES_AND_BATCHES, OPENAI, STRICT, TIERS, openai_sampling
from refed_dspy.providers.registry import PROVIDERS
from refed_dspy.providers.sampling import Sampling

API_VERSION = "2024-10-21"  # the batch API's version when the config gives none


class AzureProvider(Provider):
    """Azure OpenAI: OpenAI's batch API under the resource, with its own header, query and bodies; OpenAI's models,
    its reasoning models held to their settings (a deployment named as the model it serves)."""

    def sampling(self, model: str) -> Sampling:
        return openai_sampling(model, super().sampling(model))

    def batch_base(self, api_base: str | None) -> str:
        return str(api_base).rstrip("/").removesuffix("/openai") + "/openai"

    def batch_headers(self, key: str | None) -> dict[str, str]:
        return {"api-key": key or ""}

    def batch_query(self, api_version: str | None) -> str:
        return f"api-version={api_version or API_VERSION}"

    def batch_body(self, model: str) -> dict[str, Any]:
        # an OpenAI chat body, the deployment as its model; it holds no key (the key goes to the batch client alone)
        deployment = model.split("/", 1)[1]
        return {
            "model": f"{OPENAI.name}/{deployment}",
            "api_base": OPENAI.default_base,
            "api_version": None,
            "api_key_env": "",
        }


AZURE = PROVIDERS.register(
    AzureProvider(
        name="azure",
        title="Azure OpenAI",
        prefixes=("azure",),
        rank=2,
        hosts=(".openai.azure.com", ".cognitiveservices.azure.com", ".services.ai.azure.com"),
        key_names=("AZURE_OPENAI_API_KEY", "AZURE_OPENAI_KEY"),
        base_variables=("AZURE_API_BASE", "AZURE_OPENAI_ENDPOINT"),
        api_base_hint="the Azure OpenAI resource (https://<name>.openai.azure.com)",
        dialect=STRICT,
        schema_table=True,
        batch=dataclasses.replace(FILES_AND_BATCHES, line_url="/chat/completions"),
        prefix_cache=PrefixCache(min_tokens=1024, step=128),
        tiers=TIERS,
    )
)
# Azure AI (model inference in AI Foundry): OpenAI's structured outputs; its key and hosts Azure's (by name)
AZURE_AI = PROVIDERS.register(
    Provider(
        name="azure_ai",
        title="Azure AI",
        prefixes=("azure_ai",),
        rank=9,
        key_names=("AZURE_AI_API_KEY", "AZURE_INFERENCE_CREDENTIAL"),
        base_variables=("AZURE_AI_API_BASE", "AZURE_INFERENCE_ENDPOINT"),
        dialect=STRICT,
    )
)
