"""Every example of the README and the docs that is meant to run runs, as written, against loopback servers; the
rest say why they do not (see tests/doc_examples.py for the markers)."""

from __future__ import annotations

import re

import pytest
from doc_examples import ROOT, RUNNABLE, Block, blocks, pages, run, workspace


def _runnable_pages() -> list[str]:
    return [page for page in pages() if any(b.kind in ("run", "setup") for b in blocks(page))]


@pytest.mark.parametrize("page", _runnable_pages())
def test_the_examples_of_a_page_run_in_order_and_exit_0(page, server_factory, tmp_path):
    teacher, judge = server_factory(), server_factory()
    env = workspace(tmp_path, teacher.api_base, judge.api_base)
    ran = 0
    for block in blocks(page):
        if block.kind not in ("run", "setup"):
            continue
        result = run(block, tmp_path, env)
        assert result.returncode == 0, (
            f"{block} exited {result.returncode}:\n{block.code}\n"
            f"--- stdout ---\n{result.stdout[-4000:]}\n--- stderr ---\n{result.stderr[-4000:]}"
        )
        ran += 1
    assert ran


def unmarked(found: list[Block]) -> list[str]:
    """The blocks that break the marker rules, each with what is wrong."""
    problems = []
    for b in found:
        if b.lang in RUNNABLE and b.kind not in ("run", "skip", "checked-by", "setup"):
            problems.append(f"{b}: a {b.lang} block needs <!-- example: run --> or <!-- example: skip: REASON -->")
        elif b.kind == "skip" and len(b.arg) < 8:
            problems.append(f"{b}: say why it is not run (<!-- example: skip: REASON -->)")
        elif b.kind in ("run", "checked-by") and b.lang not in RUNNABLE:
            problems.append(f"{b}: only python and bash blocks run, not {b.lang or 'a plain block'}")
        elif b.kind == "config" and b.lang != "toml":
            problems.append(f"{b}: <!-- example: config --> marks a toml block")
        elif b.kind == "setup" and not b.code.strip():
            problems.append(f"{b}: a setup marker needs its command")
    return problems


def test_every_python_and_bash_block_says_whether_it_runs():
    found = [b for page in pages() for b in blocks(page)]
    assert not unmarked(found)
    assert sum(b.kind == "run" for b in found) >= 10  # the docs do have runnable examples


def test_an_unmarked_or_unexplained_block_is_caught():
    text = "```bash\nrefed synthesize\n```\n\n<!-- example: skip: x -->\n```python\nprint(1)\n```\n"
    text += "<!-- example: run -->\nnot the fence\n```bash\nrefed status\n```\n"
    problems = unmarked(blocks("page.md", text))
    assert len(problems) == 3 and "page.md:1" in problems[0] and "say why" in problems[1]
    assert "page.md:11" in problems[2]  # a marker belongs to the fence right after it


def test_a_block_checked_by_a_test_names_a_test_that_reads_it():
    checked = [b for page in pages() for b in blocks(page) if b.kind == "checked-by"]
    assert checked
    for b in checked:
        path, _, name = b.arg.partition("::")
        source = (ROOT / path).read_text()
        assert re.search(rf"^def {name}\(", source, re.M), f"{b}: no test {b.arg}"
        assert f'checked_block("{b.arg}")' in source, f"{b}: {b.arg} does not run this block"


def test_config_blocks_are_valid_configs():
    from refed_dspy.config import config_from_dict
    from refed_dspy.config.section import tomllib
    from refed_dspy.experiments.config import ExperimentSettings

    checked = 0
    for page in pages():
        for b in blocks(page):
            if b.kind != "config":
                continue
            data = tomllib.loads(b.code)
            table = data.pop("experiment", None)
            config_from_dict(data)
            if table is not None:
                ExperimentSettings.model_validate(table)
            checked += 1
    assert checked >= 3
