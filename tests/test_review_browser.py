"""Headless Chromium opens the false-positives view on the FiftyOne app and the samples render.

Real services: the session's private mongod, the app server as ``beltcurate review --launch``
starts it, the system Chromium driven by Playwright. The screenshot lands in
test-output/review_false_positives.png.
"""

from __future__ import annotations

import time

import pytest

from tests.support.postgres import free_port
from tests.support.review_case import EXPECTED_VIEWS, review_case, review_settings  # noqa: F401

pytestmark = [pytest.mark.fiftyone, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]
# The grid lays samples out lazily: give the first render time on a loaded 2-core machine.
RENDER_TIMEOUT_MS = 90_000

# Mean absolute deviation of the looker canvas pixels: an empty/blank canvas has ~0.
CANVAS_VARIATION_JS = """(el) => {
  const canvas = el.querySelector('canvas');
  if (!canvas || !canvas.width) return -1;
  const ctx = canvas.getContext('2d');
  const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  let sum = 0, n = 0;
  for (let i = 0; i < data.length; i += 4) { sum += data[i] + data[i + 1] + data[i + 2]; n += 3; }
  const mean = sum / n; let dev = 0;
  for (let i = 0; i < data.length; i += 4) { dev += Math.abs(data[i] - mean) + Math.abs(data[i + 1] - mean) + Math.abs(data[i + 2] - mean); }
  return dev / n;
}"""


def test_false_positive_view_renders_in_chromium(sqlite_catalog, review_settings, review_case, test_output, tmp_path):
    import os

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing; run 'make system-deps' (installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    from curation.review import build_review_dataset, launch_app, view_urls

    build_review_dataset(sqlite_catalog, review_settings, embeddings=review_case.embeddings)
    port = free_port()
    server = launch_app(review_settings, port=port, log_dir=tmp_path)
    media_ok: list[str] = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                page.on("response", lambda r: media_ok.append(r.url) if "/media" in r.url and r.status == 200 else None)
                page.goto(view_urls(review_settings, port)["false-positives"])
                page.wait_for_selector("[data-cy=looker] canvas", timeout=RENDER_TIMEOUT_MS)
                dismiss = page.get_by_text("Dismiss", exact=True)
                if dismiss.count():
                    dismiss.first.click()
                counts = page.locator("[data-cy=entry-counts]")
                counts.first.wait_for(timeout=RENDER_TIMEOUT_MS)
                deadline = time.monotonic() + 30
                variation = -1.0
                while time.monotonic() < deadline:  # the image decodes after the canvas appears
                    variation = page.locator("[data-cy=looker]").first.evaluate(CANVAS_VARIATION_JS)
                    if variation > 1.0 and media_ok:
                        break
                    time.sleep(0.5)
                screenshot = test_output / "review_false_positives.png"
                page.screenshot(path=str(screenshot))
                n_expected = len(EXPECTED_VIEWS["false-positives"])
                assert page.locator("[data-cy=looker]").count() == n_expected
                assert counts.first.inner_text().strip() == f"{n_expected} sample"
                assert "false-positives" in page.content()  # the saved view is the one selected
                assert variation > 1.0, f"the sample canvas looks blank (pixel variation {variation:.2f})"
                served = [url for url in media_ok if "fp.jpg" in url]
                assert served, f"the app never served the false-positive frame's image; media requests: {media_ok}"
                assert screenshot.stat().st_size > 10_000
            finally:
                browser.close()
    finally:
        server.stop()
