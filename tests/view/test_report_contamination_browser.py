"""report.html's benchmark contamination section in headless Chromium: no script error, the benchmark's figures,
and each matched sample beside the prompt it matches (skipped without a browser, as test_browser.py says)."""

from __future__ import annotations

import json

from conftest import run_overrides
from test_browser import browser, visit  # noqa: F401 - the module's browser fixture, shared

from refed_dspy.config import load_config
from refed_dspy.quality.report import build_report
from refed_dspy.synthesis.api import synthesize


def test_the_matched_pairs_stand_side_by_side(browser, server_factory, tmp_path):  # noqa: F811
    srv = server_factory()
    run = tmp_path / "run"
    synthesize(load_config(None, run_overrides(srv, run, 12)))
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    bench = tmp_path / "bench.jsonl"
    bench.write_text("".join(json.dumps({"prompt": s["instruction"].upper()}) + "\n" for s in samples[:3]))
    build_report(run, load_config(run / "config.toml", [f"quality.benchmarks=['{bench}']"], record=True))
    visit(browser, (run / "report.html").resolve().as_uri())
    section = browser.find_element("id", "contamination")
    assert "Matched pairs (3)" in section.text and str(bench) in section.text
    row = browser.execute_script(
        "return Array.from(document.querySelectorAll('#contamination td')).map(td => td.textContent)"
    )
    assert row == [str(bench), str(bench), "3", "3", "0.25", "0"]  # name, source, prompts, matching, share, removed
    boxes = browser.execute_script(
        "return Array.from(document.querySelectorAll('#contamination .sample')).map(p => "
        "Array.from(p.children).map(c => { const r = c.getBoundingClientRect(); return [r.left, r.top, r.width]; }))"
    )
    assert len(boxes) == 3
    for (left_x, left_y, width), (right_x, right_y, _) in boxes:
        assert right_x >= left_x + width and abs(right_y - left_y) < 2  # the prompt beside the sample, not below
    texts = browser.execute_script(
        "return Array.from(document.querySelectorAll('#contamination .sample .text')).map(t => t.textContent)"
    )
    assert texts[0] == samples[0]["instruction"] and texts[1] == samples[0]["instruction"].upper()
