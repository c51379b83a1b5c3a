"""The test-split evaluation: figures checked against hand-computed values."""

import numpy as np
import pytest

from training.data import age_band, stratified_split
from training.evaluation import evaluate, wilson_interval, with_intervals


def test_accuracy_per_class_figures_and_confusion_matrix():
    y = np.array([0, 0, 0, 1, 1, 1])
    p1 = np.array([0.1, 0.2, 0.7, 0.9, 0.8, 0.4])
    metrics = evaluate(classes=["female", "male"], y_true=y, probabilities=np.stack([1 - p1, p1], axis=1))
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["confusion_matrix"] == [[2, 1], [1, 2]]
    female, male = metrics["per_class"]
    assert female["precision"] == pytest.approx(2 / 3) and female["recall"] == pytest.approx(2 / 3)
    assert male["support"] == 3
    # ROC AUC: 8 of the 9 (negative, positive) pairs are ranked correctly.
    assert metrics["roc_auc"] == pytest.approx(8 / 9)
    assert sum(b["n"] for b in metrics["calibration"]) == 6
    assert 0 <= metrics["ece"] <= 1


def test_n_classes_and_a_class_missing_from_the_test_split():
    y = np.array([0, 1, 2, 2])
    probs = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.6, 0.2, 0.2]])
    metrics = evaluate(classes=["a", "b", "c"], y_true=y, probabilities=probs)
    assert metrics["accuracy"] == pytest.approx(0.75)
    assert metrics["roc_auc"] is not None
    metrics = evaluate(classes=["a", "b", "c"], y_true=np.array([0, 1]), probabilities=probs[:2])
    assert metrics["roc_auc"] is None  # not defined without every class present
    assert metrics["per_class"][2]["support"] == 0


def test_slice_accuracy_and_the_bias_gap():
    y = np.zeros(40, dtype=int)
    probs = np.tile([0.9, 0.1], (40, 1))
    probs[20:28] = [0.2, 0.8]  # 8 of the 20 "black" faces wrong
    slices = [{"race": "white", "age_band": "20-39"}] * 20 + [{"race": "black"}] * 20
    metrics = evaluate(classes=["female", "male"], y_true=y, probabilities=probs, slices=slices)
    race = {r["value"]: r for r in metrics["slices"]["race"]}
    assert race["white"]["accuracy"] == 1.0 and race["black"]["accuracy"] == pytest.approx(0.6)
    assert metrics["bias"]["race"]["gap"] == pytest.approx(0.4)
    assert metrics["bias"]["race"]["worst"]["value"] == "black"
    assert "age_band" not in metrics["bias"]  # one group only: no gap to report


def test_age_bands():
    assert [age_band(a) for a in (1, 12, 15, 25, 45, 80, None, "x")] == [
        "0-12",
        "0-12",
        "13-19",
        "20-39",
        "40-59",
        "60+",
        "",
        "",
    ]


def test_the_split_is_stratified_seeded_and_70_15_15():
    ids = {"female": list(range(100)), "male": list(range(100, 160))}
    a = stratified_split(ids, seed=0)
    assert a == stratified_split(ids, seed=0)
    assert a != stratified_split(ids, seed=1)
    female = [a[i] for i in range(100)]
    assert (female.count("train"), female.count("val"), female.count("test")) == (70, 15, 15)
    male = [a[i] for i in range(100, 160)]
    assert (male.count("train"), male.count("val"), male.count("test")) == (42, 9, 9)


def wilson_by_hand(k: int, n: int) -> tuple[float, float]:
    """The 95% Wilson score interval written out: (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)."""
    z = 1.959963984540054
    p = k / n
    centre = p + z * z / (2 * n)
    spread = z * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5
    return (centre - spread) / (1 + z * z / n), (centre + spread) / (1 + z * z / n)


def test_wilson_interval_against_hand_computed_values():
    # 8 of 10: the textbook example, (0.4902, 0.9433).
    low, high = wilson_interval(8, 10)
    assert (low, high) == (pytest.approx(0.490162, abs=1e-6), pytest.approx(0.943318, abs=1e-6))
    assert (low, high) == (pytest.approx(wilson_by_hand(8, 10)[0], abs=1e-6), pytest.approx(wilson_by_hand(8, 10)[1]))
    # All right or all wrong: the interval is not zero-width and stays inside [0, 1].
    assert wilson_interval(5, 5) == (pytest.approx(0.565518, abs=1e-6), 1.0)
    assert wilson_interval(0, 5) == (0.0, pytest.approx(0.434482, abs=1e-6))
    assert wilson_interval(0, 0) == (None, None)


def test_overall_accuracy_and_every_slice_row_carry_their_interval():
    y = np.zeros(40, dtype=int)
    probs = np.tile([0.9, 0.1], (40, 1))
    probs[20:28] = [0.2, 0.8]  # 8 of the 20 "black" faces wrong: 12 of 20 right
    slices = [{"race": "white"}] * 20 + [{"race": "black"}] * 20
    metrics = evaluate(classes=["female", "male"], y_true=y, probabilities=probs, slices=slices)
    assert (metrics["accuracy_ci_low"], metrics["accuracy_ci_high"]) == tuple(
        pytest.approx(v, abs=1e-6) for v in wilson_by_hand(32, 40)
    )
    race = {r["value"]: r for r in metrics["slices"]["race"]}
    assert set(race["black"]) == {"value", "n", "accuracy", "ci_low", "ci_high"}
    assert (race["black"]["ci_low"], race["black"]["ci_high"]) == tuple(
        pytest.approx(v, abs=1e-6) for v in wilson_by_hand(12, 20)
    )
    assert race["white"]["ci_high"] == 1.0 and race["white"]["ci_low"] == pytest.approx(wilson_by_hand(20, 20)[0])
    assert metrics["bias"]["race"]["worst"]["ci_low"] == race["black"]["ci_low"]


def test_old_metrics_without_intervals_get_them_from_accuracy_and_n():
    old = {
        "n_test": 40,
        "accuracy": 0.8,
        "slices": {
            "race": [{"value": "black", "n": 20, "accuracy": 0.6}, {"value": "white", "n": 20, "accuracy": 1.0}]
        },
        "bias": {"race": {"label": "Race", "gap": 0.4, "worst": {"value": "black", "n": 20, "accuracy": 0.6}}},
    }
    filled = with_intervals(old)
    assert filled["accuracy_ci_low"] == pytest.approx(wilson_by_hand(32, 40)[0], abs=1e-6)
    assert filled["slices"]["race"][0]["ci_high"] == pytest.approx(wilson_by_hand(12, 20)[1], abs=1e-6)
    assert filled["bias"]["race"]["worst"]["ci_low"] == pytest.approx(wilson_by_hand(12, 20)[0], abs=1e-6)
    assert "ci_low" not in old["slices"]["race"][0]  # the stored metrics are not changed
    assert with_intervals({}) == {"slices": {}, "bias": {}}


@pytest.fixture
def stored_version(dataset):
    from training.models import ModelVersion

    y = np.zeros(312, dtype=int)
    probs = np.tile([0.9, 0.1], (312, 1))
    probs[:27] = [0.1, 0.9]  # 285 of 312 right
    slices = [{"race": "white"}] * 200 + [{"race": "black"}] * 112
    metrics = evaluate(classes=["female", "male"], y_true=y, probabilities=probs, slices=slices)
    return ModelVersion.objects.create(
        dataset=dataset,
        number=1,
        architecture="embedding",
        artifact="x.keras",
        classes=["female", "male"],
        metrics=metrics,
    )


def test_the_version_page_shows_intervals_and_the_gap(alice_client, stored_version):
    from django.urls import reverse

    body = alice_client.get(reverse("training:version_detail", args=[stored_version.pk])).content.decode()
    low, high = wilson_by_hand(285, 312)
    assert f"(95% CI {low:.2f}–{high:.2f}, n=312)" in body
    white = stored_version.metrics["slices"]["race"][1]
    assert white["value"] == "white"
    assert (
        f'{white["accuracy"]:.3f} <span class="ci">({white["ci_low"]:.2f}–{white["ci_high"]:.2f}, n=200)</span>' in body
    )
    assert f"gap {stored_version.metrics['bias']['race']['gap']:.3f}" in body and "±" not in body
    plot = alice_client.get(reverse("training:version_plot", args=[stored_version.pk, "slices"]))
    assert plot.status_code == 200 and b"95% CI" in plot.content


def test_the_version_page_renders_old_metrics_without_intervals(alice_client, stored_version):
    from django.urls import reverse

    metrics = stored_version.metrics
    for key in ("accuracy_ci_low", "accuracy_ci_high"):
        metrics.pop(key)
    for rows in metrics["slices"].values():
        for row in rows:
            row.pop("ci_low", None), row.pop("ci_high", None)
    for b in metrics["bias"].values():
        for side in ("worst", "best"):
            b[side].pop("ci_low", None), b[side].pop("ci_high", None)
    stored_version.save(update_fields=["metrics"])
    response = alice_client.get(reverse("training:version_detail", args=[stored_version.pk]))
    assert response.status_code == 200
    low, high = wilson_by_hand(285, 312)
    assert f"(95% CI {low:.2f}–{high:.2f}, n=312)" in response.content.decode()  # computed from accuracy and n
    # Metrics with no accuracy at all (an evaluation that never ran) still render.
    stored_version.metrics = {"n_test": 0}
    stored_version.save(update_fields=["metrics"])
    assert alice_client.get(reverse("training:version_detail", args=[stored_version.pk])).status_code == 200
    assert alice_client.get(reverse("training:version_plot", args=[stored_version.pk, "slices"])).status_code == 200
