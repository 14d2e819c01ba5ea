"""One HTML stack (issue 45): report.html, experiment.html and the viewer's pages are Jinja templates rendered through
refed_dspy.pages with autoescape on, so a sample's or a label's text is shown as text and never runs as markup; the
dataset card (Markdown) is not escaped."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from importlib import resources
from types import SimpleNamespace

from conftest import run_overrides

from refed_dspy.config import load_config
from refed_dspy.experiments.outputs import render_page
from refed_dspy.export.card import dataset_card
from refed_dspy.pages import environment
from refed_dspy.quality.report import build_report
from refed_dspy.synthesis.api import synthesize

HOSTILE = "<script>alert('x')</script><img src=x onerror=\"y()\"> & </div></body>"


class Elements(HTMLParser):
    """The tags of a page and its text."""

    def __init__(self, page: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attributes: set[str] = set()
        self.text: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes |= {name for name, _ in attrs}

    def handle_data(self, data):
        self.text.append(data)


def shown_as_text(page: str) -> None:
    """`HOSTILE` appears in `page`'s text, and none of its markup became an element."""
    seen = Elements(page)
    assert "script" not in seen.tags and "onerror" not in seen.attributes
    assert HOSTILE in "".join(seen.text)


def test_every_html_template_is_escaped_and_the_card_is_not():
    for package in ("refed_dspy.view", "refed_dspy.quality", "refed_dspy.experiments"):
        names = [f.name for f in resources.files(package).joinpath("templates").iterdir() if f.name.endswith(".html")]
        assert names and all(environment(package).autoescape(name) for name in names), package
    assert not environment("refed_dspy.export").autoescape("card.md")


def test_the_report_shows_a_samples_markup_as_text(server_factory, tmp_path):
    run = tmp_path / "run"
    synthesize(load_config(None, run_overrides(server_factory(), run, 6)))
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    for s in samples:  # the best, worst and most changed cards all show one
        s["improved_response"] = HOSTILE
    (run / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    build_report(run)
    shown_as_text((run / "report.html").read_text())


def test_the_experiment_page_shows_labels_and_instructions_as_text():
    cell = {
        "id": "c1",
        "label": HOSTILE,
        "status": "done",
        "test_mean": 0.6,
        "baseline_mean": 0.5,
        "difference": {"mean": 0.1, "ci_low": 0.0, "ci_high": 0.2, "significant": False},
        "usage": {"calls": 10, "cost_usd": 0.01},
    }
    result = SimpleNamespace(
        name=HOSTILE,
        split={"train": 1, "val": 1, "test": 1},
        examples={"train": 1, "val": 1, "test": 1},
        level=0.95,
        cells=[cell],
        detectable=0.1,
        underpowered=False,
        champion=None,
        usage={"calls": 10, "cost_usd": 0.01},
        baselines=[{"teacher": HOSTILE, "test_mean": 0.5}],
    )
    program = {"p": {"instructions": "Answer.", "demos": []}}
    changed = {"p": {"instructions": f"Answer. {HOSTILE}", "demos": [{"question": HOSTILE}]}}
    page = render_page(result, ["cell"], [[HOSTILE]], {"c1": (program, changed)})
    seen = Elements(page)
    assert "script" not in seen.tags and "onerror" not in seen.attributes and "svg" in seen.tags and "ins" in seen.tags
    text = "".join(seen.text)
    # the title, the heading, the chart's baseline and point, the leaderboard, the program's summary, diff and demo
    assert text.count(HOSTILE) >= 7


def test_the_dataset_card_keeps_markdown_as_written():
    prov = {"summary": {}, "filters": [], "seeds": "a <b>seed</b> & set", "judge": {}, "incomplete": None}
    meta = {"method": "refed", "teacher": "t", "reference_id": "r"}
    card = dataset_card(
        {"train": [{"meta": meta}, {"meta": {**meta, "reference_id": None}}]}, "messages", "improved", None, prov
    )
    assert "| seed references | a <b>seed</b> & set (1 reference behind these samples) |" in card
    assert card.endswith("```\n")


def test_the_live_page_shows_whole_figures_whole_and_a_time_left_as_a_time():
    """Its first render said `calls 103.0 of 216`, `time left 0.0000` and `in a window of 2.0` (the page's script,
    a second later, said 103, 0s and 2)."""
    from refed_dspy.view.routes import time_left

    live = {
        "state": "running",
        "status": "writing responses",
        "role": "teacher",
        "written_at": "12:00:00",
        "what": "samples",
        "records": 3,
        "target": 20,
        "records_per_s": 0.05,
        "eta_s": 185.0,
        "spend": [{"budget": "calls", "spent": 103.0, "limit": 216.0}],
        "in_flight": 2,
        "window": 2.0,
        "concurrency": 2,
        "events": [],
    }
    shell = {"status": SimpleNamespace(kind="run", live=True, path="runs/x", notes=[]), "live_script": ""}

    def shown(figures: dict) -> str:
        page = environment("refed_dspy.view").get_template("live.html")
        return " ".join(
            " ".join(Elements(page.render(live=figures, time_left=time_left(figures), **shell)).text).split()
        )

    text = shown(live)
    assert "calls 103 of 216" in text and "time left 3m05s" in text and "2 in a window of 2 " in text, text
    ended = shown({**live, "state": "ended", "eta_s": 0.0, "window": 2.5})
    assert "time left none" in ended and "in a window of 2.5 " in ended, ended
    assert "time left unknown" in shown({**live, "eta_s": None})
