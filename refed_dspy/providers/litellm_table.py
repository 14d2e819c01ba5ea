"""The providers LiteLLM knows and the variables it reads each one's key from, kept here as a table.

Deciding whose key a variable is, or which variable a model's key comes from, happens at every start of every command;
asking LiteLLM took its import (seconds). The table is LiteLLM's own (its `provider_list`, and the variables its
`validate_environment` names for each provider) as of the version named below; tests/clients/test_key_names.py compares
it with the LiteLLM installed and prints the table anew when they differ, so it cannot drift unseen.
"""

from __future__ import annotations

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
