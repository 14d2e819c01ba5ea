"""A seed source that names a local file and does not exist is "not found" at once: one line, exit 2, and no
attempt to reach the Hugging Face hub (issue 69, item 4)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import sets
from conftest import run_overrides

from refed_dspy.errors import SeedError
from refed_dspy.store import seeds
from refed_dspy.store.seeds import looks_local, read_references

SOCKET_SPY = Path(__file__).resolve().parents[1] / "socket_spy"


@pytest.mark.parametrize(
    "source",
    ["data/my_seeds.jsonl", "me/seeds.json", "me/seeds.CSV", "me/x.parquet", "me/notes.txt", "./x", "~/x", "/x/y"],
)
def test_a_missing_local_file_never_reaches_the_hub(source, tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)

    def hub(*args, **kwargs):
        raise AssertionError(f"{source} was sent to the hub")

    monkeypatch.setattr(seeds, "_hub_rows", hub)
    assert looks_local(source)
    with pytest.raises(SeedError, match=f"^seed source not found: {source} "):
        read_references(source)


def test_a_path_under_a_folder_that_exists_is_local(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert not looks_local("data/my_seeds")
    (tmp_path / "data").mkdir()
    assert looks_local("data/my_seeds")


@pytest.mark.parametrize("name", ["GAIR/lima", "tatsu-lab/alpaca", "teknium/OpenHermes-2.5", "allenai/c4"])
def test_a_hub_name_still_goes_to_the_hub(name, tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    asked = []

    def hub(source, split, subset=None):
        asked.append(source)
        yield {"instruction": "Say hi.", "response": "Hi."}

    monkeypatch.setattr(seeds, "_hub_rows", hub)
    assert not looks_local(name)
    refs, _ = read_references(name)
    assert asked == [name] and len(refs) == 1


def test_synthesize_with_a_mistyped_local_path_is_one_line_and_no_network(server_factory, tmp_path):
    """`refed synthesize` with seeds.source = "data/my_seeds.jsonl" from a folder holding data/: exit 2, one line
    naming the file, and no host but loopback looked up or connected to, with the hub not told to stay offline."""
    srv = server_factory()
    (tmp_path / "data").mkdir()
    log = tmp_path / "sockets.log"
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    env.update(PYTHONPATH=str(SOCKET_SPY), REFED_SOCKET_LOG=str(log), LITELLM_LOCAL_MODEL_COST_MAP="true")
    over = run_overrides(srv, tmp_path / "run", 4) + ["seeds.source='data/my_seeds.jsonl'"]
    proc = subprocess.run(
        [sys.executable, "-m", "refed_dspy.cli", "synthesize", *sets(over)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert errors == [
        "refed: error: seed source not found: data/my_seeds.jsonl "
        "(a local file, a saved dataset directory, or a hub name like GAIR/lima)"
    ], proc.stderr
    seen = {line.split(" ", 1)[1] for line in log.read_text().splitlines()} if log.exists() else set()
    assert seen <= {"127.0.0.1", "localhost", "::1"}, seen
    assert not (tmp_path / "run" / "samples.jsonl").exists()


def test_a_missing_seed_file_given_to_an_existing_run_is_said_as_missing(server_factory, tmp_path):
    """The same mistyped path on a run dir that was made already: the file is not there (one line), not "made by a
    different config" with --fresh offered (the newcomer trial)."""
    from refed_dspy.config import load_config
    from refed_dspy.synthesis.api import synthesize

    srv = server_factory()
    over = run_overrides(srv, tmp_path / "run", 4)
    assert synthesize(load_config(None, over))["samples"] == 4
    with pytest.raises(SeedError, match="seed source not found"):
        synthesize(load_config(None, [*over, f"seeds.source='{tmp_path / 'nope.jsonl'}'"]))
