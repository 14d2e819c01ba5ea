"""Hugging Face: its Hub and inference endpoints are its hosts, and the tokens its libraries read are its key (HF_TOKEN
goes to the Hub when a seed set or an export uses it; nowhere else). Its format and schema dialect are LiteLLM's."""

from __future__ import annotations

from refed_dspy.providers.base import Provider
from refed_dspy.providers.registry import PROVIDERS

HUGGINGFACE = PROVIDERS.register(
    Provider(
        name="huggingface",
        title="Hugging Face",
        prefixes=("huggingface",),
        hosts=("huggingface.co", ".huggingface.co", "hf.co", ".hf.co", ".huggingface.cloud", ".hf.space"),
        key_names=(
            "HF_TOKEN",
            "HUGGING_FACE_HUB_TOKEN",
            "HUGGINGFACE_API_KEY",
            "HUGGINGFACEHUB_API_TOKEN",
            "HF_API_TOKEN",
            "HF_API_KEY",
        ),
    )
)
