"""Server-side SVG plots (matplotlib, no pyplot: figures are thread-safe that way) of training
curves and evaluation results. Served as image/svg+xml and shown in <img>, so nothing in them runs."""

import io

import matplotlib

matplotlib.use("Agg")

from matplotlib.figure import Figure


def _svg(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    return buffer.getvalue()


def curves_svg(history: list[dict]) -> bytes:
    """Loss and accuracy per epoch, training and validation side by side."""
    fig = Figure(figsize=(9, 3.2))
    loss_ax, acc_ax = fig.subplots(1, 2)
    epochs = [row["epoch"] for row in history]
    for ax, key, title in ((loss_ax, "loss", "Loss"), (acc_ax, "accuracy", "Accuracy")):
        if history:
            ax.plot(epochs, [row.get(key) for row in history], marker="o", ms=3, label="training")
            ax.plot(epochs, [row.get(f"val_{key}") for row in history], marker="o", ms=3, label="validation")
            ax.legend(loc="best", fontsize=8)
        else:
            ax.text(0.5, 0.5, "waiting for the first epoch", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    return _svg(fig)


def confusion_svg(matrix: list[list[int]], classes: list[str]) -> bytes:
    n = len(classes)
    fig = Figure(figsize=(1.2 + 0.9 * n, 1.0 + 0.8 * n))
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    peak = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            ax.text(j, i, str(value), ha="center", va="center", color="white" if value > peak / 2 else "black")
    ax.set_xticks(range(n), classes, rotation=30, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("labelled")
    ax.set_title("Confusion matrix (test split)")
    return _svg(fig)


def calibration_svg(calibration: list[dict]) -> bytes:
    fig = Figure(figsize=(4, 3.6))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect")
    if calibration:
        ax.plot([b["confidence"] for b in calibration], [b["accuracy"] for b in calibration], marker="o", label="model")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("confidence of the predicted class")
    ax.set_ylabel("accuracy")
    ax.set_title("Calibration (test split)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    return _svg(fig)


def slices_svg(slices: dict[str, list[dict]], overall: float | None) -> bytes:
    kinds = [k for k, rows in slices.items() if rows]
    fig = Figure(figsize=(4.2 * max(1, len(kinds)), 3.2))
    axes = fig.subplots(1, max(1, len(kinds)), squeeze=False)[0]
    if not kinds:
        axes[0].text(0.5, 0.5, "no metadata on the test faces", ha="center", va="center")
        axes[0].set_axis_off()
    for ax, kind in zip(axes, kinds, strict=False):
        rows = slices[kind]
        accuracy = [r["accuracy"] for r in rows]
        # 95% Wilson intervals as error bars, for rows that carry them (older metrics may not).
        below = [max(0.0, r["accuracy"] - r["ci_low"]) if r.get("ci_low") is not None else 0 for r in rows]
        above = [max(0.0, r["ci_high"] - r["accuracy"]) if r.get("ci_high") is not None else 0 for r in rows]
        has_ci = any(below) or any(above)
        ax.bar(
            range(len(rows)),
            accuracy,
            color="#2f6fed",
            yerr=[below, above] if has_ci else None,
            ecolor="#344054",
            capsize=3,
        )
        ax.set_xticks(range(len(rows)), [f"{r['value']}\n(n={r['n']})" for r in rows], fontsize=7)
        if overall is not None:
            ax.axhline(overall, color="#c4320a", ls="--", lw=1, label=f"overall {overall:.3f}")
            ax.legend(loc="lower right", fontsize=7)
        ax.set_ylim(0, 1.02)
        ax.set_title(f"Accuracy by {kind.replace('_', ' ')}" + (" (95% CI)" if has_ci else ""))
    return _svg(fig)
