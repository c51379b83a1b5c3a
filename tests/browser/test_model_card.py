"""A version's model card in a real browser: bob (an annotator, who may look but not train)
opens a version page, clicks "Model card", and gets model-card-v1.zip holding MODEL_CARD.md,
which names the page's accuracy, and the SVG plots it links."""

import re
import zipfile

import pytest

from tests.labeling.factories import make_faces
from tests.training.test_drilldown_links import build_version

pytestmark = pytest.mark.browser


def test_the_version_page_downloads_its_model_card(new_page, bob, dataset, tmp_path):
    make_faces(dataset, 120, labels=["female", "male"])
    version = build_version(dataset)

    page = new_page(bob)
    page.goto(f"/training/versions/{version.pk}/")
    shown = page.inner_text("#test-accuracy")
    assert page.is_visible("#model-card")
    with page.expect_download() as download_info:
        page.click("#model-card")
    download = download_info.value
    assert download.suggested_filename == "model-card-v1.zip"
    path = tmp_path / download.suggested_filename
    download.save_as(path)

    with zipfile.ZipFile(path) as bundle:
        names = set(bundle.namelist())
        markdown = bundle.read("MODEL_CARD.md").decode()
        svgs = {name: bundle.read(name) for name in names if name.endswith(".svg")}
    assert f"Test accuracy **{shown}**" in markdown
    assert shown == f"{version.metrics['accuracy']:.4f}"
    linked = set(re.findall(r"\]\((plots/[a-z]+\.svg)\)", markdown))
    assert linked == set(svgs) and {"plots/confusion.svg", "plots/calibration.svg", "plots/slices.svg"} <= linked
    assert all(b"<svg" in svg for svg in svgs.values())
    # The page is still there: a download does not navigate away.
    assert page.url.endswith(f"/training/versions/{version.pk}/")
