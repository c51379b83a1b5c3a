"""Test-split evaluation of a model version: accuracy, per-class precision/recall/F1, ROC AUC, the
confusion matrix, a calibration curve and accuracy per metadata slice with the gap between the
best and worst slice; every accuracy with its 95% Wilson score interval. Pure numpy/scikit-learn,
so the web process can recompute or show it."""

import math

import numpy as np

# A slice with fewer test faces than this is listed but does not count towards the bias gap:
# its accuracy is mostly noise.
MIN_SLICE_SIZE = 10
SLICE_NAMES = {"age_band": "Age band", "race": "Race", "source": "Source", "quality": "Quality band"}
# Two-sided 95%: the standard normal quantile at 0.975.
Z_95 = 1.959963984540054


def wilson_interval(correct: int, n: int, z: float = Z_95) -> tuple[float, float] | tuple[None, None]:
    """The Wilson score interval of a proportion of `correct` out of `n` (95% by default): unlike
    p +- z*sqrt(p(1-p)/n) it stays inside [0, 1] and is not zero-width at 0 or n of n, which matters
    for slices of a few dozen faces. (None, None) when n is 0."""
    if n <= 0:
        return None, None
    p = correct / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return round(max(0.0, centre - half), 6), round(min(1.0, centre + half), 6)


def _with_interval(row: dict, correct: int, n: int) -> dict:
    row["ci_low"], row["ci_high"] = wilson_interval(correct, n)
    return row


def _clean(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else round(value, 6)


def evaluate(
    *,
    classes: list[str],
    y_true: np.ndarray,
    probabilities: np.ndarray,
    slices: list[dict[str, str]] | None = None,
    bins: int = 10,
) -> dict:
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, roc_auc_score

    y_true = np.asarray(y_true, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    n_classes = len(classes)
    y_pred = probabilities.argmax(axis=1)
    correct = y_pred == y_true
    labels = list(range(n_classes))
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    per_class = [
        {
            "class": classes[i],
            "precision": _clean(precision[i]),
            "recall": _clean(recall[i]),
            "f1": _clean(f1[i]),
            "support": int(support[i]),
        }
        for i in labels
    ]
    present = sorted(set(y_true.tolist()))
    roc_auc = None
    if len(present) >= 2:
        try:
            if n_classes == 2:
                roc_auc = roc_auc_score(y_true, probabilities[:, 1])
            elif len(present) == n_classes:
                roc_auc = roc_auc_score(y_true, probabilities, multi_class="ovr", labels=labels)
        except ValueError:
            roc_auc = None

    # Calibration: confidence of the predicted class against how often it is right, in bins.
    confidence = probabilities.max(axis=1)
    edges = np.linspace(0.0, 1.0, bins + 1)
    calibration = []
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        mask = (confidence > lo) & (confidence <= hi) if lo > 0 else (confidence >= lo) & (confidence <= hi)
        n = int(mask.sum())
        if n:
            acc = float(correct[mask].mean())
            conf = float(confidence[mask].mean())
            ece += n / len(y_true) * abs(acc - conf)
            calibration.append({"low": round(lo, 3), "high": round(hi, 3), "n": n, "accuracy": acc, "confidence": conf})

    metrics = {
        "n_test": int(len(y_true)),
        "accuracy": _clean(correct.mean()) if len(y_true) else None,
        "balanced_accuracy": _clean(np.mean([r["recall"] for r in per_class if r["support"]])) if len(y_true) else None,
        "macro_f1": _clean(np.mean([r["f1"] for r in per_class])),
        "roc_auc": _clean(roc_auc),
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "calibration": calibration,
        "ece": _clean(ece),
        "slices": slice_accuracy(correct, slices or []),
    }
    metrics["accuracy_ci_low"], metrics["accuracy_ci_high"] = wilson_interval(int(correct.sum()), len(y_true))
    metrics["bias"] = bias_summary(metrics["slices"])
    return metrics


def with_intervals(metrics: dict) -> dict:
    """`metrics` with the Wilson intervals filled in where they are missing: versions evaluated
    before intervals were stored have accuracy (rounded to 6 places) and n, from which the count of
    correct faces is recovered exactly. Returns a copy; the stored metrics are not changed."""
    metrics = dict(metrics or {})
    n_test, accuracy = metrics.get("n_test"), metrics.get("accuracy")
    if "accuracy_ci_low" not in metrics and isinstance(n_test, int) and isinstance(accuracy, (int, float)):
        metrics["accuracy_ci_low"], metrics["accuracy_ci_high"] = wilson_interval(round(accuracy * n_test), n_test)

    def fill(row: dict) -> dict:
        if "ci_low" in row or not isinstance(row.get("n"), int) or not isinstance(row.get("accuracy"), (int, float)):
            return row
        return _with_interval(dict(row), round(row["accuracy"] * row["n"]), row["n"])

    metrics["slices"] = {name: [fill(r) for r in rows] for name, rows in (metrics.get("slices") or {}).items()}
    metrics["bias"] = {
        name: {**b, "worst": fill(b.get("worst") or {}), "best": fill(b.get("best") or {})}
        for name, b in (metrics.get("bias") or {}).items()
    }
    # Versions evaluated before the tie fix may pair a slice with itself: recompute from the rows.
    if any(b["worst"].get("value") == b["best"].get("value") for b in metrics["bias"].values()):
        metrics["bias"] = bias_summary(metrics["slices"])
    return metrics


def class_errors(matrix: list[list[int]], classes: list[str]) -> list[dict]:
    """Per class from the confusion matrix (rows: label, columns: prediction): its false
    positives (predicted it, labelled otherwise) and false negatives (labelled it, predicted
    otherwise)."""
    out = []
    for i, name in enumerate(classes):
        if i >= len(matrix):
            break
        column = sum(row[i] for row in matrix if i < len(row))
        out.append(
            {"class": name, "false_positives": column - matrix[i][i], "false_negatives": sum(matrix[i]) - matrix[i][i]}
        )
    return out


def slice_accuracy(correct: np.ndarray, slices: list[dict[str, str]]) -> dict[str, list[dict]]:
    """{slice name: [{value, n, accuracy, ci_low, ci_high}, ...]} for every metadata slice present on
    test faces, the interval being the 95% Wilson score interval of the accuracy."""
    result: dict[str, list[dict]] = {}
    if not slices:
        return result
    names = sorted({name for s in slices for name in s})
    for name in names:
        groups: dict[str, list[bool]] = {}
        for ok, s in zip(correct.tolist(), slices, strict=True):
            value = s.get(name)
            if value:
                groups.setdefault(value, []).append(ok)
        result[name] = [
            _with_interval(
                {"value": value, "n": len(oks), "accuracy": round(sum(oks) / len(oks), 6)}, sum(oks), len(oks)
            )
            for value, oks in sorted(groups.items(), key=lambda kv: _slice_order(kv[0]))
        ]
    return result


def _slice_order(value: str):
    digits = "".join(ch for ch in value.split("-")[0] if ch.isdigit())
    return (0, int(digits), value) if digits else (1, 0, value)


def bias_summary(slices: dict[str, list[dict]]) -> dict[str, dict]:
    """Per slice kind: the worst and best slice (of at least MIN_SLICE_SIZE faces) and the gap."""
    summary = {}
    for name, rows in slices.items():
        big = [r for r in rows if r["n"] >= MIN_SLICE_SIZE]
        if len(big) < 2:
            continue
        # Sorted once, worst first: on a tie min() and max() both answered the first row, and the
        # page said "blurry 0.759 vs blurry 0.759"; the two ends of one sort are two slices.
        ordered = sorted(big, key=lambda r: r["accuracy"])
        worst, best = ordered[0], ordered[-1]
        summary[name] = {
            "label": SLICE_NAMES.get(name, name),
            "gap": round(best["accuracy"] - worst["accuracy"], 6),
            "worst": worst,
            "best": best,
        }
    return summary
