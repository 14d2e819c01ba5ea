"""`refed train` without a model: the held-out draw, the plan a training dir keeps (and refuses another), the
checkpoint a resume takes, the steps and the curve's points, the batches' padding, the one-line errors. The real
student's must-shows are in test_train_tier.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from refed_dspy.config import Config, TrainConfig
from refed_dspy.errors import ConfigError, RunDirError, SeedError
from refed_dspy.quality.statistics import Pair
from refed_dspy.training import fine_tune
from refed_dspy.training.evaluate import AnswerLine
from refed_dspy.training.fine_tune import (
    Collate,
    StepLine,
    check_plan,
    last_checkpoint,
    logging_steps,
    plan_of,
    split,
    steps_of,
    train_student,
)
from refed_dspy.training.student import IGNORE, Example, Layout, layout_of


def pairs(n: int) -> list[Pair]:
    return [Pair(f"p{i}", f"instruction {i}", f"response {i}") for i in range(n)]


def test_the_held_out_share_is_drawn_with_the_seed_and_never_takes_every_pair():
    train, held = split(pairs(20), 0.1, seed=0)
    assert len(held) == 2 and len(train) == 18 and not {p.id for p in train} & {p.id for p in held}
    assert split(pairs(20), 0.1, seed=0) == (train, held)  # the same draw again
    assert {p.id for p in split(pairs(20), 0.1, seed=1)[1]} != {p.id for p in held}
    assert [len(x) for x in split(pairs(3), 0.1, 0)] == [2, 1]  # at least one held out
    assert [len(x) for x in split(pairs(2), 0.9, 0)] == [1, 1]  # never every pair
    assert [len(x) for x in split(pairs(1), 0.5, 0)] == [1, 0]
    assert [len(x) for x in split(pairs(20), 0.0, 0)] == [20, 0]


def test_a_dir_of_another_training_is_refused_naming_what_differs(tmp_path):
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    train, held = split(pairs(10), 0.2, 0)
    plan = plan_of(TrainConfig(), train, held)
    check_plan(tmp_path / fine_tune.PLAN, plan)
    check_plan(
        tmp_path / fine_tune.PLAN, plan_of(TrainConfig(device="cuda", save_steps=7), train, held)
    )  # where and how often: same
    with pytest.raises(ConfigError, match=r"learning_rate: 0.0002 -> 0.001"):
        check_plan(tmp_path / fine_tune.PLAN, plan_of(TrainConfig(learning_rate=1e-3), train, held))
    with pytest.raises(ConfigError, match=r"the data \(8 \+ 2 held-out pairs -> 7 \+ 2 held-out pairs\)"):
        check_plan(tmp_path / fine_tune.PLAN, plan_of(TrainConfig(), train[1:], held))
    edited = [Pair(train[0].id, train[0].instruction, "another response"), *train[1:]]
    with pytest.raises(ConfigError, match="the data"):
        check_plan(tmp_path / fine_tune.PLAN, plan_of(TrainConfig(), edited, held))


def test_a_resume_takes_the_newest_checkpoint_written_whole(tmp_path):
    assert last_checkpoint(tmp_path / "none") is None
    for step in (5, 10, 15):
        (tmp_path / f"checkpoint-{step}").mkdir()
    for step in (5, 10):
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text('{"global_step": 1}')
    (tmp_path / "checkpoint-15" / "trainer_state.json").write_text('{"global_st')  # a kill while it was written
    (tmp_path / "checkpoint-x").mkdir()
    assert last_checkpoint(tmp_path) == tmp_path / "checkpoint-10"


def test_the_steps_and_the_points_of_the_loss_curve():
    assert steps_of(TrainConfig(batch_size=4), 22) == 6
    assert steps_of(TrainConfig(batch_size=4, epochs=2.5), 22) == 15
    assert steps_of(TrainConfig(batch_size=4, gradient_accumulation=2), 22) == 3
    # 3 batches an epoch at 2 a step: transformers steps on the last one alone, so 2 steps an epoch (1, rounded down,
    # trained 1.5 of the 3 epochs asked)
    assert steps_of(TrainConfig(batch_size=4, gradient_accumulation=2, epochs=3), 10) == 6
    assert steps_of(TrainConfig(batch_size=8, gradient_accumulation=4, epochs=3), 1000) == 3 * 32
    assert steps_of(TrainConfig(max_steps=30), 22) == 30
    assert logging_steps(TrainConfig(), 400) == 20
    assert logging_steps(TrainConfig(), 20) == 1
    assert logging_steps(TrainConfig(), 3) == 1  # two points at least where there are two steps
    assert logging_steps(TrainConfig(logging_steps=7), 400) == 7


def test_a_batch_is_padded_on_the_right_with_no_loss_on_the_padding():
    collate = Collate(type("T", (), {"tensor": staticmethod(lambda rows: rows)}), pad=0)
    batch = collate([Example([5, 6, 7], [IGNORE, 6, 7]), Example([8], [8])])
    assert batch == {
        "input_ids": [[5, 6, 7], [8, 0, 0]],
        "attention_mask": [[1, 1, 1], [1, 0, 0]],
        "labels": [[IGNORE, 6, 7], [8, IGNORE, IGNORE]],
    }


class Template:
    """A tokenizer whose chat template wraps turns in tags (or refuses them)."""

    bos_token, eos_token = "<s>", "</s>"

    def __init__(self, refuses: bool = False):
        self.chat_template = "tags"
        self.refuses = refuses

    def apply_chat_template(self, turns, tokenize=False):
        if self.refuses:
            raise ValueError("no assistant turns")
        return "".join(f"<{t['role']}>{t['content']}</{t['role']}>" for t in turns)


def test_a_pair_is_laid_out_in_the_student_s_chat_template():
    assert layout_of(Template()) == Layout("<user>", "</user><assistant>", "</assistant>")
    assert layout_of(Template(refuses=True)) == Layout("<s>", "\n\n", "</s>")


def test_the_progress_line_says_the_step_the_loss_and_the_time_left():
    now = [100.0]
    state = type("S", (), {"global_step": 5, "max_steps": 20, "log_history": [{"loss": 2.5, "step": 5}]})()
    line = StepLine(type("T", (), {"state": state})(), resumed_at=5, clock=lambda: now[0])
    assert line() == "step 5/20, loss 2.500, ETA unknown"
    now[0], state.global_step = 110.0, 10
    state.log_history.append({"loss": 1.25, "step": 10})
    assert line() == "step 10/20, loss 1.250, 2.0 s/step, ETA 20s"
    # the newcomer trial: while the next step runs, the line read 60, then 90, then 120 s/step; the figure holds
    now[0] = 118.0
    assert line() == "step 10/20, loss 1.250, 2.0 s/step, ETA 12s"
    now[0] = 200.0
    assert line() == "step 10/20, loss 1.250, 2.0 s/step, ETA 0s"


def test_a_source_without_pairs_or_without_the_extra_is_one_line(tmp_path, monkeypatch):
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"instruction": "Say hi.", "response": " "}) + "\n")
    with pytest.raises(SeedError, match="no usable reference pairs"):
        train_student(empty, tmp_path / "out", Config())
    folder = tmp_path / "not_a_run"  # a run dir given before its run wrote a sample (or the wrong folder)
    folder.mkdir()
    with pytest.raises(ConfigError, match=r"neither a run dir \(it holds no samples.jsonl\) nor a saved Hugging"):
        train_student(folder, tmp_path / "out", Config())
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps({"instruction": f"Q{i}?", "response": f"A{i}."}) + "\n" for i in range(4)))
    monkeypatch.setitem(sys.modules, "peft", None)  # what a missing package looks like to an import
    with pytest.raises(
        ConfigError, match=r"train extra \(peft is not installed\): pip install .*requirements/train.txt"
    ):
        train_student(good, tmp_path / "out", Config())
    # nothing kept that would refuse the same command once the extra is installed (the plan is written as it starts)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".refed-dir", ".refed.lock"]


def test_an_out_dir_that_is_not_refed_s_to_take_is_refused_before_anything_is_written(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps({"instruction": f"Q{i}?", "response": f"A{i}."}) + "\n" for i in range(4)))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's")
    with pytest.raises(RunDirError, match="--out"):
        train_student(good, mine, Config())
    run = tmp_path / "run"
    run.mkdir()
    (run / "journal.jsonl").write_text("")
    with pytest.raises(RunDirError, match="inside the run dir"):
        train_student(good, run / "student", Config())
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"] and not (run / "student").exists()


def test_the_command_says_a_bad_source_in_one_line(tmp_path):
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "refed_dspy.cli",
            "train",
            str(tmp_path / "missing.jsonl"),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_a_training_is_an_mlflow_run_with_its_settings_curve_held_out_loss_and_adapter(tmp_path):
    import mlflow

    out = tmp_path / "student"
    (out / fine_tune.ADAPTER).mkdir(parents=True)
    (out / fine_tune.ADAPTER / "adapter_config.json").write_text('{"r": 8}')
    summary = fine_tune.TrainSummary(
        student="smollm2", source="run", samples=10, held_out=2, steps=6, losses=[3.0, 2.0, 1.5],
        loss_steps=[2, 4, 6], held_out_loss=1.7, wall_s=12.5, adapter=str(out / fine_tune.ADAPTER), device="cpu",
        dtype="float32",
    )  # fmt: skip
    (out / fine_tune.SUMMARY).write_text(json.dumps(summary.to_json()))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = Config.model_validate({"tracking": {"enabled": True, "mlflow_uri": uri}, "train": {"lora_rank": 4}})
    fine_tune.track_training(config, out, summary)
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("refed").experiment_id])
    assert run.data.tags["refed.kind"] == "train" and run.data.params["train.lora_rank"] == "4"
    curve = client.get_metric_history(run.info.run_id, "train_loss")
    assert [(m.step, m.value) for m in curve] == [(2, 3.0), (4, 2.0), (6, 1.5)]
    assert run.data.metrics["held_out_loss"] == 1.7 and run.data.metrics["steps"] == 6
    names = {a.path for a in client.list_artifacts(run.info.run_id, fine_tune.ADAPTER)}
    assert names == {f"{fine_tune.ADAPTER}/adapter_config.json"}
    # `refed train` run again on a finished training logs it where it was not logged, and only once
    fine_tune.track_training(config, out, summary)
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 3


def test_a_gguf_s_plain_copy_is_kept_whole_or_not_at_all(tmp_path):
    from refed_dspy.training.student import WHOLE, keep_dense

    tmp_path = tmp_path / "students"
    tmp_path.mkdir()

    class Saves:
        def __init__(self, fails: bool = False):
            self.fails = fails

        def save_pretrained(self, where):
            Path(where).mkdir(parents=True, exist_ok=True)
            (Path(where) / "model.safetensors").write_text("weights")
            if self.fails:
                raise OSError(28, "No space left on device")

    gguf = tmp_path.parent / "model.gguf"
    gguf.write_text("weights")
    keep_dense(Saves(fails=True), Saves(), tmp_path / "copy", gguf)  # a full disk: nothing kept, nothing left aside
    assert list(tmp_path.iterdir()) == []
    keep_dense(Saves(), Saves(), tmp_path / "copy", gguf)
    assert sorted(p.name for p in (tmp_path / "copy").iterdir()) == [WHOLE, "model.safetensors"]
    keep_dense(Saves(), Saves(), tmp_path / "copy", gguf)  # kept already (another process first): left as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]
    # the GGUF installed again (another modification time): its new copy replaces the old, whose GGUF changed; one
    # another process is writing aside stays, as does the copy of another GGUF that is still there
    (tmp_path / "copy.123.tmp").mkdir()
    other = tmp_path.parent / "other.gguf"
    other.write_text("other weights")
    keep_dense(Saves(), Saves(), tmp_path / "other", other)
    os.utime(gguf, ns=(1, 1))
    keep_dense(Saves(), Saves(), tmp_path / "again", gguf)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "copy.123.tmp", "other"]
    other.unlink()  # a GGUF gone (a virtual environment removed): its copy goes with the next one kept
    (tmp_path / "unsaid").mkdir()  # a copy that does not say its GGUF: kept
    (tmp_path / "unsaid" / WHOLE).write_text("")
    keep_dense(Saves(), Saves(), tmp_path / "again", gguf)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "copy.123.tmp", "unsaid"]
    keep_dense(Saves(), Saves(), gguf / "students" / "x", gguf)  # a cache that cannot be made: nothing kept, no error


def test_the_answering_line_measures_the_answers_made_not_the_wait_for_the_next():
    now = [0.0]
    line = AnswerLine(6, clock=lambda: now[0])
    now[0] = 180.0
    line.add(3)
    assert line() == "answering: 3/6 answers, 60.0 s an answer, ETA 3m00s"
    now[0] = 270.0  # the next batch under way: it read 90.0 s an answer
    assert line() == "answering: 3/6 answers, 60.0 s an answer, ETA 1m30s"
