"""Live mode: the browser's camera (Chromium's fake device playing a clip of a face) is sent frame
after frame and each answer's boxes are drawn over the video as they come."""

import re

import pytest

from tests.browser.conftest import watch_csp
from tests.chromium import CHROMIUM, CHROMIUM_ARGS, face_clip, fake_camera_args
from tests.conftest import PASSWORD
from tests.training.predict_support import embedding_version, labelled_faces


@pytest.mark.browser
def test_live_mode_draws_boxes_on_camera_frames(browser, live_server, dataset, alice, tmp_path):
    labelled_faces(dataset)
    embedding_version(dataset, alice, predictions=False)
    clip = tmp_path / "face.mjpeg"
    face_clip(clip)
    camera = fake_camera_args(clip)
    # A second Chromium from the session's Playwright, with the fake camera switched on.
    camera_browser = browser.browser_type.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + camera)
    try:
        context = camera_browser.new_context(base_url=live_server.url, permissions=["camera"])
        refused: list[str] = []
        watch_csp(context, refused)
        context.set_default_timeout(30_000)
        page = context.new_page()
        page.goto("/accounts/login/")
        page.fill("#id_username", alice.username)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/accounts/login/" not in url)
        page.goto("/predict/")
        page.click("#camera-start")
        page.wait_for_function("() => document.getElementById('camera-video').videoWidth > 0")
        page.check("#camera-live")
        page.locator("#live-overlay .pbox").first.wait_for(state="visible", timeout=60_000)
        page.wait_for_timeout(3000)
        stats = page.inner_text("#live-stats")
        fps = float(re.match(r"([\d.]+) frames/s", stats).group(1))
        print(f"live mode on the test server: {stats}")
        assert fps > 0 and "1 face(s)" in stats
        page.uncheck("#camera-live")
        assert page.locator("#live-overlay .pbox").count() == 0
        # A still frame from the camera goes through the same path as a chosen photo.
        page.click("#camera-snap")
        page.locator(".result .pbox").first.wait_for(state="visible", timeout=30_000)
        assert "camera-" in page.inner_text(".result .name")
        assert refused == [], f"the Content-Security-Policy refused: {refused}"
    finally:
        camera_browser.close()
