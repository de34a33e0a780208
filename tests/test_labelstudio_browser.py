"""Headless Chromium logs in to the real Label Studio, opens a pushed task and sees the frame and
the pre-annotation regions (the editor only shows predictions of the project's model_version)."""

from __future__ import annotations

import shutil

import pytest

from curation.labelstudio import push_frames
from tests.support.labelstudio import add_predictions, make_config, make_frames

pytestmark = [pytest.mark.labelstudio, pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
UI_TIMEOUT_MS = 90_000  # the labeling UI is a large bundle: ~10 s on 2 busy cores


def test_the_editor_shows_the_frame_and_the_preannotations(sqlite_catalog, labelstudio_server, test_output):
    from playwright.sync_api import sync_playwright

    frame_ids = make_frames(sqlite_catalog, labelstudio_server.frames_dir("browser"), 2, width=320, height=240)
    add_predictions(sqlite_catalog, frame_ids, "det-browser")
    config = make_config(labelstudio_server)
    summary = push_frames(sqlite_catalog, config, frame_ids, reasons={frame_ids[0]: "uncertain: pet_bottle 0.42"})
    task_id = summary.task_ids[frame_ids[0]]
    screenshot = test_output / "labelstudio-editor.png"

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{labelstudio_server.url}/user/login/")
            page.fill("input[name=email]", labelstudio_server.username)
            page.fill("input[name=password]", labelstudio_server.password)
            page.click("button[type=submit]")
            page.wait_for_url(lambda url: "/user/login" not in url, timeout=UI_TIMEOUT_MS)

            page.goto(f"{labelstudio_server.url}/projects/{summary.project_id}/data?task={task_id}")
            regions = page.locator(".lsf-outliner-item")
            regions.nth(1).wait_for(timeout=UI_TIMEOUT_MS)
            page.get_by_text("uncertain: pet_bottle 0.42").wait_for(timeout=UI_TIMEOUT_MS)
            frame_name = "west_cam1_00000.jpg"
            page.wait_for_function(
                "name => Array.from(document.querySelectorAll('img')).some("
                "i => i.src.includes(name) && i.complete && i.naturalWidth > 0)",
                arg=frame_name, timeout=UI_TIMEOUT_MS,
            )
            sizes = page.evaluate(
                "name => Array.from(document.querySelectorAll('img')).filter(i => i.src.includes(name))"
                ".map(i => [i.naturalWidth, i.naturalHeight])", frame_name)
            texts = regions.all_inner_texts()
            page.screenshot(path=str(screenshot))
        finally:
            browser.close()

    assert [320, 240] in sizes  # the frame's bytes arrived and decoded
    assert len(texts) == 2
    assert "cardboard" in texts[0] and "0.91" in texts[0]  # per-region scores from the detector
    assert "pet_bottle" in texts[1] and "0.42" in texts[1]
    assert screenshot.stat().st_size > 10_000
