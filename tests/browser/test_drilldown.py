"""From analysis to data in a real browser: alice clicks a confusion-matrix cell of a version and
a bar of a quality histogram, and lands on the grid showing exactly those faces, with the filter
said in words."""

import pytest

from curator.models import Face
from labeling.selectors import quality_histogram_counts
from tests.labeling.factories import make_faces
from tests.training.test_drilldown_links import build_version
from training.data import snapshot_read
from training.models import Prediction

pytestmark = pytest.mark.browser


def tile_ids(page) -> set[int]:
    return {int(i) for i in page.locator("#grid figure").evaluate_all("ts => ts.map(t => t.dataset.id)")}


def test_a_confusion_cell_opens_the_faces_it_counts(new_page, alice, dataset):
    make_faces(dataset, 120, labels=["female", "male"])
    version = build_version(dataset)
    female, male = version.classes
    test = {r["face_id"]: r["label"] for r in snapshot_read(version.snapshot) if r["split"] == "test"}
    predicted = dict(Prediction.objects.filter(model_version=version).values_list("face_id", "predicted_label"))
    expected = {f for f, label in test.items() if label == female and predicted[f] == male}
    assert len(expected) == version.metrics["confusion_matrix"][0][1] > 0

    page = new_page(alice)
    page.goto(f"/training/versions/{version.pk}/")
    with page.expect_navigation():
        page.click("#plot-confusion #cell-0-1 a")
    assert f"/labeling/{dataset.pk}/?" in page.url
    page.wait_for_selector("#grid figure")
    assert tile_ids(page) == expected
    assert page.get_attribute("#grid", "data-total") == str(len(expected))
    words = page.inner_text("#filter-words")
    assert "in v1's test split" in words and f"labelled {female} when v1 was trained" in words
    assert f"predicted {male} by v1" in words

    # Filtering again from the form keeps the version's snapshot filters (hidden inputs).
    with page.expect_navigation():
        page.evaluate("document.getElementById('filters').requestSubmit()")
    assert "model_label=female" in page.url and tile_ids(page) == expected


def test_a_histogram_bar_opens_the_faces_in_its_range(new_page, alice, dataset):
    faces = make_faces(dataset, 90, labels=["female", "male", ""])
    Face.objects.filter(pk__in=[f.pk for f in faces[::9]]).update(is_excluded=True)
    sharpness = next(h for h in quality_histogram_counts(dataset=dataset) if h["metric"] == "sharpness")
    i = max(range(len(sharpness["included"])), key=lambda k: sharpness["included"][k])
    if i == 0:  # the first bar includes its left edge; take a later one to see the exclusive bound at work
        i = max(range(1, len(sharpness["included"])), key=lambda k: sharpness["included"][k])
    low, high = sharpness["edges"][i], sharpness["edges"][i + 1]
    expected = set(
        Face.objects.filter(dataset=dataset, is_excluded=False, sharpness__gt=low, sharpness__lte=high).values_list(
            "pk", flat=True
        )
    )
    assert len(expected) == sharpness["included"][i] > 0

    page = new_page(alice)
    page.goto(f"/labeling/{dataset.pk}/curate/")
    with page.expect_navigation():
        page.click(f"#bar-sharpness-included-{i} a")
    page.wait_for_selector("#grid figure")
    assert tile_ids(page) == expected
    words = page.inner_text("#filter-words")
    assert f"sharpness above {low:g}" in words and f"sharpness at most {high:g}" in words
    assert "included (not excluded)" in words
