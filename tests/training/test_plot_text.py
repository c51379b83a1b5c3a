"""Every user string matplotlib draws (metadata values in the slice plot, class names, titles) is
plain text: `$\\frac{$` in labels.csv once made the version page and slices.svg answer 500 for
good, because matplotlib parsed `$...$` in a tick label as mathtext."""

import pytest

from tests.labeling.factories import make_faces
from tests.training.test_drilldown_links import build_version
from training import plots

MATH = "$\\frac{$"


@pytest.fixture
def version(dataset):
    make_faces(
        dataset,
        40,
        labels=["female", "male"],
        metadata=[{"race": MATH if i % 2 else "$x^2$ & <b>", "age": str(20 + i % 3)} for i in range(40)],
    )
    return build_version(dataset)


def test_the_version_page_and_its_slices_plot_draw_dollar_signs_as_text(alice_client, version):
    page = alice_client.get(f"/training/versions/{version.pk}/")
    assert page.status_code == 200
    svg = alice_client.get(f"/training/versions/{version.pk}/plots/slices.svg")
    assert svg.status_code == 200
    body = svg.content.decode()
    assert "$\\frac{$" in body and "$x^2$ &amp; &lt;b&gt;" in body
    assert "<b>" not in body


def test_confusion_and_curves_take_any_class_name():
    plots.confusion_svg([[1, 2], [3, 4]], ["$\\sqrt{$", "$a$"])
    plots.curves_svg([{"epoch": 1, "loss": 0.5, "accuracy": 0.5, "val_loss": 0.6, "val_accuracy": 0.4}])
