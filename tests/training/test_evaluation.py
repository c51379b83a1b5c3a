"""The test-split evaluation: figures checked against hand-computed values."""

import numpy as np
import pytest

from training.data import age_band, stratified_split
from training.evaluation import evaluate


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
