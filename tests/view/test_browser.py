"""`refed view` and the report in a real browser: Debian's headless Chromium driven by Selenium.

Every page is loaded, its content checked, and the browser's console read: a JavaScript error (or any
SEVERE console entry) fails the test. Skipped without chromium/chromedriver unless REFED_REQUIRE_BROWSER
is set (CI sets it and installs them).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import run_overrides, start_refed_server

from refed_dspy.config import load_config
from refed_dspy.quality.filter_run import filter_run, parse_filter
from refed_dspy.quality.judge import judge_run
from refed_dspy.quality.report import build_report
from refed_dspy.synthesis.api import synthesize

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def _need_a_browser() -> None:
    missing = [p for p in (CHROMIUM, DRIVER) if not shutil.which(p)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium")
    if missing:
        why = (
            f"browser tests need {', '.join(missing)} (apt-get install chromium chromium-driver; pip install selenium)"
        )
        if os.environ.get("REFED_REQUIRE_BROWSER"):
            pytest.fail(why)
        pytest.skip(why)


@pytest.fixture(scope="module")
def browser():
    _need_a_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--window-size=1400,1000",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield driver
    driver.quit()


def visit(driver, url: str, missing: bool = False):
    """Load `url` and fail on any JavaScript error or SEVERE console entry (`missing`: the page itself is a 404,
    which the browser logs as a failed load)."""
    driver.get(url)
    errors = [
        e
        for e in driver.get_log("browser")
        if e["level"] == "SEVERE" and not (missing and e["source"] == "network" and e["message"].startswith(url))
    ]
    assert not errors, errors
    return driver


def tree(path: Path) -> dict[str, bytes]:
    """Every file of a run but its DSPy cache (this test process's own DSPy closes that cache when a later test
    configures another run, and SQLite writes the file on close; the viewer never opens it)."""
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).digest()
        for p in sorted(path.rglob("*"))
        if p.is_file() and p.relative_to(path).parts[0] != "cache"
    }


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A judged run (with rejects that kept the model's text), a filtered copy, and a report."""
    import sys as _sys

    _sys.path.insert(0, str(Path(__file__).parents[1]))
    from loopback_server import LoopbackServer, ServerConfig

    tmp = tmp_path_factory.mktemp("browser")
    with LoopbackServer(
        ServerConfig(sticky_malformed=0.35, sticky_length=0.05, log_path=str(tmp / "log.jsonl"))
    ) as srv:
        run = tmp / "run"
        cfg = load_config(
            None,
            run_overrides(
                srv,
                run,
                30,
                **{
                    "seeds.limit": 8,
                    "synthesis.instructions_per_feature": 2,
                    "judge.api_base": f"'{srv.api_base}'",
                    "judge.api_key_env": "''",
                },
            ),
        )
        synthesize(cfg)
        judge_run(run, cfg)
    filtered = tmp / "filtered"
    filter_run(run, filtered, [parse_filter("judge_prefers_improved")], unjudged="drop")
    build_report(run, cfg)
    return {"run": run, "filtered": filtered, "tmp": tmp}


def serve(path: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    return start_refed_server(["view", str(path), "--port", "0", *extra], r"(http://127\.0\.0\.1:\d+)/")


@pytest.fixture(scope="module")
def viewer(data):
    before = tree(data["run"])
    proc, url = serve(data["run"])
    yield url
    proc.terminate()
    proc.wait(timeout=30)
    assert tree(data["run"]) == before  # the viewer never wrote a byte


def rows(driver) -> list:
    return driver.find_elements("css selector", "table#samples tr.row")


def test_list_search_and_filters(browser, viewer, data):
    visit(browser, viewer + "/")
    assert browser.find_element("tag name", "body").get_attribute("data-ready") == "1"
    samples = [json.loads(x) for x in (data["run"] / "samples.jsonl").read_text().splitlines()]
    n = len(samples)  # 30 asked for; under a 35% sticky-malformed server a few may run out of their call budget
    assert n >= 20 and len(rows(browser)) == n and f"{n} of {n} samples match" in browser.page_source

    # search narrows the list to samples holding every term
    def text(s):
        return "\n".join((s["instruction"], s["response"], s.get("improved_response") or "")).lower()

    # a word some samples hold and others do not (the loopback's text is random, so pick it from the data)
    word = next(
        w
        for w in sorted({w.lower().strip(".,;:!?") for s in samples for w in s["instruction"].split()})
        if len(w) > 4 and 0 < sum(w in text(s) for s in samples) < n
    )
    box = browser.find_element("id", "q")
    box.send_keys(word)
    box.submit()
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 10).until(
        lambda d: "q=" in d.current_url and d.find_element("tag name", "body").get_attribute("data-ready") == "1"
    )
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    found = rows(browser)
    expected = [s for s in samples if word in text(s)]
    assert 0 < len(found) == len(expected) < n
    # a filter: only the samples the judge says the improvement won
    judgments = {j["sample_id"]: j for j in map(json.loads, (data["run"] / "judgments.jsonl").read_text().splitlines())}
    wins = sum(1 for j in judgments.values() if j.get("pairwise", {}).get("winner") == "improved")
    visit(browser, viewer + "/?verdict=win")
    assert len(rows(browser)) == wins and all(
        b.text == "win" for b in browser.find_elements("css selector", "td .badge")
    )
    visit(browser, viewer + "/?score_min=6&score_max=10")
    expected = sum(1 for j in judgments.values() if j.get("pointwise") and j["pointwise"]["overall"] >= 6)
    assert len(rows(browser)) == expected
    # pages: 7 a page, and the pager's links walk through all of them
    visit(browser, viewer + "/?per=7")
    seen = len(rows(browser))
    while browser.find_elements("css selector", "a[rel=next]"):
        visit(browser, browser.find_element("css selector", "a[rel=next]").get_attribute("href"))
        seen += len(rows(browser))
    assert seen == n


def test_sample_page_shows_the_diff_scores_reference_and_provenance(browser, viewer, data):
    samples = [json.loads(x) for x in (data["run"] / "samples.jsonl").read_text().splitlines()]
    judgments = {j["sample_id"]: j for j in map(json.loads, (data["run"] / "judgments.jsonl").read_text().splitlines())}
    s = next(s for s in samples if s["meta"]["id"] in judgments and judgments[s["meta"]["id"]].get("pairwise"))
    visit(browser, f"{viewer}/sample/{s['meta']['id']}")
    assert browser.find_element("id", "instruction").text == s["instruction"].strip()
    assert browser.find_elements("css selector", "#improved ins") and browser.find_elements(
        "css selector", "#draft del"
    )
    # the improved side, read back without the highlights, is the improved response
    assert browser.find_element("id", "improved").text.split() == s["improved_response"].split()
    scores = [int(td.text) for td in browser.find_elements("css selector", "#judge td.score")]
    assert scores == list(judgments[s["meta"]["id"]]["pointwise"]["scores"].values())
    assert len(browser.find_elements("css selector", "#judge .pairwise")) == 2
    assert "Reference pair" in browser.page_source and browser.find_element("id", "reference").text.count("\n") > 2
    assert s["meta"]["teacher"] in browser.page_source
    browser.find_element("id", "diff-toggle").click()  # the script that turns the highlights off runs cleanly
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    visit(browser, f"{viewer}/sample/no-such-id", missing=True)
    assert "Not found" in browser.page_source


def test_sample_page_shows_the_reference_beside_it_and_marks_a_copy(browser, data):
    from refed_dspy.quality.figures import run_references
    from refed_dspy.store.rundir import RunDir
    from refed_dspy.text.overlap import tokens

    copied = data["tmp"] / "copied"
    shutil.copytree(data["run"], copied)
    samples = [json.loads(x) for x in (copied / "samples.jsonl").read_text().splitlines()]
    refs = run_references(RunDir(copied))
    copy, other = samples[0], samples[1]
    ref = refs[copy["meta"]["reference_id"]]
    copy["improved_response"] = "Sure. " + ref[1]  # the reference's response, one word added
    (copied / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    proc, url = serve(copied)
    try:
        visit(browser, f"{url}/sample/{copy['meta']['id']}")
        assert browser.find_element("id", "reference-instruction").text == ref[0].strip()
        assert browser.find_element("id", "reference-response").text.split() == ref[1].split()
        assert browser.find_element("id", "beside-response").text.split() == copy["improved_response"].split()
        marks = browser.find_elements("css selector", "#beside-response mark")
        assert len(marks) == 1 and tokens(marks[0].text) == tokens(ref[1])  # all of its words, copied in one run
        response_row = browser.find_elements("css selector", "#closeness tr")[2]
        assert response_row.text.startswith("response 1.00") and "copy" in response_row.text
        visit(browser, f"{url}/sample/{other['meta']['id']}")
        other_ref = refs[other["meta"]["reference_id"]]
        assert browser.find_element("id", "reference-response").text.split() == other_ref[1].split()
        texts = "#beside-instruction, #beside-response, #reference-instruction, #reference-response"
        assert len(browser.find_elements("css selector", texts)) == 4
        found = browser.find_elements("css selector", texts.replace(",", " mark,") + " mark, #closeness .badge")
        assert not found, [e.get_attribute("outerHTML") for e in found]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_sample_of_10_mb_opens_with_its_start_and_a_link_to_the_whole(browser, data):
    """Issue 66: the page of a 10 MB sample never came. It opens with each text's start, says it is cut, its diff
    toggle runs cleanly, and the link under a text opens the whole of it."""
    from refed_dspy.view.shown import SHOWN_CHARS

    long = data["tmp"] / "long"
    shutil.copytree(data["run"], long)
    samples = [json.loads(x) for x in (long / "samples.jsonl").read_text().splitlines()]
    s = next(s for s in samples if s.get("improved_response"))
    s["response"] = " ".join(f"draft{i % 997}" for i in range(700_000))
    s["improved_response"] = " ".join(f"improved{i % 991}" for i in range(700_000))
    (long / "samples.jsonl").write_text("".join(json.dumps(x) + "\n" for x in samples))
    proc, url = serve(long)
    try:
        visit(browser, f"{url}/sample/{s['meta']['id']}")
        assert "This sample is long" in browser.find_element("id", "long").text
        assert len(browser.find_element("id", "improved").text) <= SHOWN_CHARS
        browser.find_element("id", "diff-toggle").click()
        assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        links = browser.find_elements("css selector", "a.whole")
        assert [a.get_attribute("href").rsplit("/", 1)[1] for a in links] == [
            "response.txt",
            "improved_response.txt",
            "improved_response.txt",
        ]
        visit(browser, links[1].get_attribute("href"))  # no error either: its browser's ask for an icon is answered
        assert browser.find_element("tag name", "body").text.split() == s["improved_response"].split()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_rejects_page_shows_what_the_model_returned(browser, viewer, data):
    rejects = [json.loads(x) for x in (data["run"] / "rejects.jsonl").read_text().splitlines()]
    with_raw = [r for r in rejects if r.get("raw")]
    assert with_raw
    visit(browser, viewer + "/rejects")
    groups = browser.find_elements("css selector", "table#groups tr")[1:]
    judge_rejects = (
        (data["run"] / "judge_rejects.jsonl").read_text().splitlines()
        if (data["run"] / "judge_rejects.jsonl").exists()
        else []
    )
    assert sum(int(g.find_elements("tag name", "td")[2].text) for g in groups) == len(rejects) + len(judge_rejects)
    reason = with_raw[0]["reason"]
    visit(browser, f"{viewer}/rejects?stage={with_raw[0]['stage']}&reason={reason}")
    # a <pre> keeps trailing blanks, and the kept raw text is cut at RAW_CHARS, often after a space: compare stripped
    shown = [p.text.strip() for p in browser.find_elements("css selector", "pre.raw")]
    assert with_raw[0]["raw"].strip() in shown


def test_a_run_that_ended_with_no_sample_shows_why_and_its_rejects(browser, server_factory, tmp_path):
    """Every reply cut off at max_tokens: 0 samples and no samples.jsonl (the viewer refused such a run)."""
    from cli_helpers import run_refed, sets

    srv = server_factory(sticky_length=1.0)
    run = tmp_path / "run"
    over = run_overrides(srv, run, 4, **{"seeds.limit": 2, "synthesis.instructions_per_feature": 1})
    code, _, err = run_refed("synthesize", *sets(over))
    assert code != 0 and not (run / "samples.jsonl").exists(), err
    rejects = [json.loads(x) for x in (run / "rejects.jsonl").read_text().splitlines()]
    proc, url = serve(run)
    try:
        visit(browser, url + "/")
        said = browser.find_element("css selector", "#empty").text
        assert "0 of 4 samples" in said and "raise teacher.max_tokens" in said, said
        assert rows(browser) == []
        browser.find_element("css selector", "#empty a").click()
        visit(browser, browser.current_url)
        assert browser.current_url.endswith("/rejects")
        shown = [p.text.strip() for p in browser.find_elements("css selector", "pre.raw")]
        assert len(shown) == len(rejects) and rejects[0]["raw"].strip() in shown
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_filtered_view_and_new_samples_on_reload(browser, data):
    proc, url = serve(data["run"], "--filtered", str(data["filtered"]))
    try:
        visit(browser, url + "/?outcome=removed")
        summary = json.loads((data["filtered"] / "filter_summary.json").read_text())
        assert len(rows(browser)) == summary["removed"]
        visit(browser, url + "/?outcome=kept")
        assert len(rows(browser)) == summary["kept"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    # a run still being written: what is appended shows on the next load
    growing = data["tmp"] / "growing"
    shutil.copytree(data["run"], growing)
    lines = (growing / "samples.jsonl").read_text().splitlines(keepends=True)
    n, first = len(lines), len(lines) // 2
    (growing / "samples.jsonl").write_text("".join(lines[:first]))
    proc, url = serve(growing)
    try:
        visit(browser, url + "/")
        assert f"{first} of {first} samples match" in browser.page_source
        with open(growing / "samples.jsonl", "a") as fh:
            fh.write("".join(lines[first:]) + '{"instruction": "half a li')  # the last line is still being written
        visit(browser, url + "/")
        assert f"{n} of {n} samples match" in browser.page_source
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_compare_dir_shows_one_reference_from_each_method(browser, server_factory, tmp_path):
    from refed_dspy.experiments.compare import compare

    srv = server_factory()
    cfg = load_config(
        None, run_overrides(srv, tmp_path / "cmp", 8, **{"seeds.limit": 4, "synthesis.instructions_per_feature": 2})
    )
    compare(cfg, ["refed", "no_feedback"])
    proc, url = serve(tmp_path / "cmp")
    try:
        visit(browser, url + "/compare")
        columns = browser.find_elements("css selector", ".method")
        assert [c.find_element("tag name", "h3").text.split(" (")[0] for c in columns] == ["no_feedback", "refed"]
        reference = browser.find_element("id", "reference-pick").get_attribute("value")
        for method, col in zip(["no_feedback", "refed"], columns, strict=True):
            rows_ = [json.loads(x) for x in (tmp_path / "cmp" / method / "samples.jsonl").read_text().splitlines()]
            assert len(col.find_elements("css selector", ".card")) == sum(
                r["meta"]["reference_id"] == reference for r in rows_
            )
        visit(browser, url + "/?method=refed")
        assert len(rows(browser)) == 8
        # the header names both methods (it named the first run's: "method no_feedback")
        assert "method no_feedback, refed" in browser.find_element("tag name", "body").text
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_report_renders_every_figure(browser, data):
    visit(browser, (data["run"] / "report.html").resolve().as_uri())
    images = browser.execute_script("return Array.from(document.images).map(i => [i.alt, i.naturalWidth])")
    assert {"scores", "verdicts", "yield_feature", "yield_reference", "lengths", "rejects", "cost"} <= {
        a for a, _ in images
    }
    assert all(width > 100 for _, width in images), images
    text = browser.find_element("tag name", "body").text
    assert (
        "Samples to read" in text and "Best by judge score" in text and "Most changed by the improvement step" in text
    )
    assert "improved beats draft" in text


def test_experiment_dir_shows_its_cells_and_each_program(browser, server_factory, tmp_path):
    """`refed view EXPERIMENT_DIR`: the cells page (a kept baseline or a score, and a link to each program), a cell's
    program page (each predictor's instructions and demos), and the experiment's own page, without a script error."""
    from refed_dspy.experiments.experiment import experiment

    teacher, judge = server_factory(signal=True), server_factory(signal=True)
    conf = tmp_path / "exp.toml"
    conf.write_text(
        "\n".join(
            [
                "[teacher]",
                f"api_base = '{teacher.api_base}'",
                "api_key_env = ''",
                "[judge]",
                f"api_base = '{judge.api_base}'",
                "api_key_env = ''",
                "[run]",
                "progress = false",
                "[optimize]",
                "num_threads = 1",
                "max_demos = 2",
                "[experiment]",
                f"out = '{tmp_path / 'exp'}'",
                "examples = 24",
                "test_fraction = 0.4",
                "[experiment.grid]",
                '"optimize.optimizer" = ["bootstrap"]',
            ]
        )
        + "\n"
    )
    result = experiment(conf)
    cell = result.cells[0]
    proc, url = serve(tmp_path / "exp")
    try:
        visit(browser, url + "/experiment")
        row = browser.find_element("id", f"cell-{cell['id']}")
        assert "optimizer=bootstrap" in row.text and "done" in row.text
        row.find_element("link text", "program").click()
        assert f"The program of cell {cell['id']}" in browser.find_element("tag name", "h2").text
        assert len(browser.find_elements("css selector", ".card")) >= 2  # the draft's predictor and the improver's
        visit(browser, f"{url}/program/{cell['id']}")
        visit(browser, url + "/experiment.html")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
