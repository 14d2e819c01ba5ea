"""`refed view`'s live page in headless Chromium while a run works (issue 55): its figures change between two looks
without a reload, and it says "ended" once the run has ended (skipped without a browser, as test_browser.py says)."""

from __future__ import annotations

import time

from cli_helpers import refed, sets
from conftest import run_overrides, start_refed_server
from test_browser import browser, visit  # noqa: F401 - the module's browser fixture, shared

WAIT_S = 120  # the most any awaited change may take on a loaded machine (the test waits for events, not times)


def _until(condition, what: str):
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _shown(driver) -> dict:
    return driver.execute_script(
        "const t = id => document.getElementById(id).textContent;"
        "return {state: document.getElementById('live').dataset.state, looks: +document.getElementById('live')"
        ".dataset.looks, records: t('live-records'), spend: Array.from(document.querySelectorAll('#live-spend td'))"
        ".map(td => td.textContent), window: t('live-window'), events: document.querySelectorAll('#live-events tr')"
        ".length};"
    )


def test_the_live_page_follows_a_run_and_says_when_it_ended(browser, server_factory, tmp_path):  # noqa: F811
    srv = server_factory(latency_s=0.25)
    run = tmp_path / "run"
    overrides = run_overrides(srv, run, 30, **{"synthesis.concurrency": 2, "seeds.limit": 3})
    synthesis = refed("synthesize", *sets(overrides))
    viewer = None
    try:
        _until(lambda: (run / "metrics.json").exists() or synthesis.poll() is not None, "the run's first figures")
        assert synthesis.poll() is None, synthesis.communicate()
        viewer, url = start_refed_server(["view", str(run), "--port", "0"], r"(http://127\.0\.0\.1:\d+)/")
        visit(browser, f"{url}/live")
        first = _until(
            lambda: (s := _shown(browser))["looks"] >= 1 and s["state"] == "running" and s["spend"] and s, "a look"
        )
        assert first["window"] == "2"
        # later looks, no reload: more records and more spent
        later = _until(
            lambda: (s := _shown(browser))["records"] != first["records"] and s["spend"] != first["spend"] and s,
            "the records and the spend to change",
        )
        assert int(later["records"]) > int(first["records"]) and later["looks"] > first["looks"]
        assert browser.execute_script("return performance.getEntriesByType('navigation').length") == 1
        assert synthesis.wait(timeout=WAIT_S) == 0, synthesis.stderr.read()
        ended = _until(lambda: (s := _shown(browser))["state"] == "ended" and s, "the page to say ended")
        assert ended["records"] == "30" and browser.find_element("id", "live-state").text == "ended"
        assert browser.find_element("id", "live-status").text == "complete"
        assert ended["events"] > 0
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
        # the header links to the live page from the others
        visit(browser, f"{url}/")
        assert browser.find_element("link text", "Live").get_attribute("href").endswith("/live")
    finally:
        if synthesis.poll() is None:
            synthesis.kill()
        if viewer is not None:
            viewer.kill()
            viewer.wait()
