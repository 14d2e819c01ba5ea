"""[quality] benchmarks: presets resolve to their hub datasets, local files and saved datasets are read by the seed
loader's readers, and every bad entry is one ConfigError naming the benchmark. Nothing reaches the network: the
hub is stood in for where a preset's loading is followed."""

import csv
import json

import pytest

from refed_dspy.config.judging import Benchmark
from refed_dspy.errors import ConfigError
from refed_dspy.store.benchmarks import PRESETS, load_benchmark, load_benchmarks, resolve

PROMPTS = ["Write a limerick about a cat who learns to code.", "Explain why the sky is blue to a ten-year-old."]


@pytest.mark.parametrize(
    "entry, source, file, split, field",
    [
        ("alpaca_eval", "tatsu-lab/alpaca_eval", "alpaca_eval.json", "train", "instruction"),
        ("AlpacaEval 2.0", "tatsu-lab/alpaca_eval", "alpaca_eval.json", "train", "instruction"),
        ("arena_hard", "lmarena-ai/arena-hard-auto-v0.1", None, "train", "turns"),
        ("Arena-Hard", "lmarena-ai/arena-hard-auto-v0.1", None, "train", "turns"),
        ("mt_bench", "HuggingFaceH4/mt_bench_prompts", None, "train", "prompt"),
        ("MT-Bench", "HuggingFaceH4/mt_bench_prompts", None, "train", "prompt"),
        ("ifeval", "google/IFEval", None, "train", "prompt"),
        ("IFEval", "google/IFEval", None, "train", "prompt"),
    ],
)
def test_presets_resolve_to_their_hub_dataset(entry, source, file, split, field):
    spec = resolve(entry)
    assert (spec.source, spec.file, spec.split, spec.field) == (source, file, split, field)
    assert spec.label in ("AlpacaEval 2.0", "Arena-Hard v0.1", "MT-Bench", "IFEval")


def test_a_path_or_a_table_is_itself_and_an_unknown_name_is_refused():
    assert resolve("evals/alpaca_eval.jsonl") == Benchmark(source="evals/alpaca_eval.jsonl")
    assert resolve("evals/alpaca_eval.jsonl").label == "evals/alpaca_eval.jsonl"
    table = Benchmark(source="me/evals", config="hard", split="test", field="question", name="mine")
    assert resolve(table) is table and table.label == "mine"
    with pytest.raises(ConfigError, match="neither a preset .* nor a file; did you mean 'alpaca_eval'"):
        resolve("alpaca_evl")
    assert sorted(PRESETS) == ["alpaca_eval", "arena_hard", "ifeval", "mt_bench"]


def write_rows(path, rows):
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows))
    elif path.suffix == ".csv":
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet"])
@pytest.mark.parametrize("column", ["instruction", "prompt"])
def test_a_local_file_whose_rows_carry_instruction_or_prompt(tmp_path, suffix, column):
    rows = [{"id": i, column: p} for i, p in enumerate(PROMPTS)] + [{"id": 9, column: PROMPTS[0]}]
    path = write_rows(tmp_path / f"bench{suffix}", rows)
    loaded = load_benchmark(str(path))
    assert loaded.name == str(path) and loaded.prompts == PROMPTS  # a prompt given twice counts once


def test_a_saved_dataset_directory_and_a_named_field_of_turns(tmp_path):
    import datasets

    rows = [
        {"turns": [{"content": PROMPTS[0]}, {"content": "Now make it rhyme twice."}]},
        {"turns": [{"content": PROMPTS[1]}]},
    ]
    datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "saved"))
    spec = Benchmark(source=str(tmp_path / "saved"), split="test", field="turns", name="saved")
    assert load_benchmark(spec).prompts == [PROMPTS[0], "Now make it rhyme twice.", PROMPTS[1]]
    with pytest.raises(ConfigError, match="benchmark 'saved': .*no split 'train'; splits: \\['test'\\]"):
        load_benchmark(spec.model_copy(update={"split": "train"}))


def test_presets_load_through_the_hub_readers(tmp_path, monkeypatch):
    """What a user's machine fetches, stood in for: AlpacaEval's file of its hub repository, and a hub dataset whose
    prompt is a list of messages (Arena-Hard) or a list of turns (MT-Bench)."""
    import datasets
    import huggingface_hub

    alpaca = write_rows(tmp_path / "alpaca_eval.json", [{"instruction": p, "dataset": "x"} for p in PROMPTS])
    asked = []
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda **kw: asked.append(kw) or str(alpaca))
    assert load_benchmark("alpaca_eval").prompts == PROMPTS
    assert asked == [{"repo_id": "tatsu-lab/alpaca_eval", "filename": "alpaca_eval.json", "repo_type": "dataset"}]

    hub = {
        "lmarena-ai/arena-hard-auto-v0.1": [{"question_id": "q", "turns": [{"content": PROMPTS[1]}]}],
        "HuggingFaceH4/mt_bench_prompts": [{"prompt": [PROMPTS[0], "Rewrite it as a sonnet."], "category": "w"}],
    }
    calls = []

    def load_dataset(path, split=None, name=None):
        calls.append((path, name, split))
        return datasets.Dataset.from_list(hub[path])

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    loaded = load_benchmarks(["arena_hard", "MT-Bench"])
    assert [(b.name, b.prompts) for b in loaded] == [
        ("Arena-Hard v0.1", [PROMPTS[1]]),
        ("MT-Bench", [PROMPTS[0], "Rewrite it as a sonnet."]),
    ]
    assert calls == [
        ("lmarena-ai/arena-hard-auto-v0.1", None, "train"),
        ("HuggingFaceH4/mt_bench_prompts", None, "train"),
    ]
    hub["me/evals"] = [{"question": PROMPTS[0]}]
    assert load_benchmark(Benchmark(source="me/evals", config="hard", split="test", field="question")).local is False
    assert calls[-1] == ("me/evals", "hard", "test")  # a table's configuration and split reach the hub


def test_bad_entries_are_one_line_naming_the_benchmark(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.chdir(tmp_path)
    write_rows(tmp_path / "q.jsonl", [{"question": p} for p in PROMPTS])
    write_rows(tmp_path / "empty.jsonl", [{"instruction": "  "}])
    (tmp_path / "bad.jsonl").write_text('{"instruction": "a"}\n{oops\n')

    def offline(**kw):
        raise OSError("We could not connect to the hub\nmore lines")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    cases = [
        ("evals/missing.jsonl", "benchmark 'evals/missing.jsonl': file not found: evals/missing.jsonl"),
        ("mt-bnch", "benchmark 'mt-bnch' is neither a preset"),
        ("q.jsonl", "benchmark 'q.jsonl': its rows have no field instruction or prompt; columns found: ['question']"),
        (Benchmark(source="q.jsonl", field="text"), "benchmark 'q.jsonl': no field 'text' in its rows"),
        ("empty.jsonl", "benchmark 'empty.jsonl': no prompts in empty.jsonl"),
        ("bad.jsonl", "benchmark 'bad.jsonl': bad.jsonl:2: not valid JSON"),
        ("alpaca_eval", "benchmark 'AlpacaEval 2.0': cannot download alpaca_eval.json of the hub dataset"),
    ]
    for entry, message in cases:
        with pytest.raises(ConfigError) as err:
            load_benchmark(entry)
        assert str(err.value).startswith(message) and "\n" not in str(err.value), (entry, str(err.value))
    with pytest.raises(ConfigError, match="two benchmarks are named 'q.jsonl'"):
        load_benchmarks([Benchmark(source="q.jsonl", field="question"), Benchmark(source="q.jsonl", field="question")])
