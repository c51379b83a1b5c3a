"""Server-side SVG plots (matplotlib, no pyplot: figures are thread-safe that way) of training
curves and evaluation results. The evaluation plots take an optional `link` callback: each cell,
bar or bin it answers a URL for is wrapped in an <a> (matplotlib's set_url), and the version page
inlines those SVGs so a click opens the grid on exactly the faces drawn. Served alone (the
.svg URLs) they are images, and nothing in them runs."""

import io
from collections.abc import Callable

import matplotlib
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from curator.plotting import svg_presentation  # also sets Agg, and user strings drawn as plain text


def _svg(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    # Text as <text>, not glyph outlines: smaller, selectable, and clickable as a link.
    with rc_context({"svg.fonttype": "none"}):
        fig.savefig(buffer, format="svg", bbox_inches="tight")
    # No style="" or <style>: pages inline these SVGs under a CSP without 'unsafe-inline'.
    return svg_presentation(buffer.getvalue().decode()).encode()


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


Link = Callable[..., str | None]


def inline(svg: bytes) -> str:
    """The <svg> element alone, for inlining in a page (an <img> cannot follow the links that
    set_url puts in the drawing). Matplotlib escapes the text and the URLs it writes."""
    text = svg.decode()
    # matplotlib opens its links in a new tab; a drill-down should stay in this one.
    return text[text.index("<svg") :].replace(' target="_blank"', "")


def confusion_svg(
    matrix: list[list[int]], classes: list[str], link: Link | None = None, colours: list[str] | None = None
) -> bytes:
    """Cells drawn as squares (not one image) so each can be a link: link(i, j) is the grid of
    the faces labelled classes[i] and predicted classes[j]. `colours` (one per class: the class
    colours of every page, curator.colours) mark each row and column with its class's colour."""
    n = len(classes)
    fig = Figure(figsize=(1.2 + 0.9 * n, 1.0 + 0.8 * n))
    ax = fig.subplots()
    peak = max((max(row) for row in matrix), default=0)
    cmap = matplotlib.colormaps["Blues"]
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            cell = Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor=cmap(value / peak if peak else 0.0), edgecolor="white")
            ax.add_patch(cell)
            ax.text(j, i, str(value), ha="center", va="center", color="white" if value > peak / 2 else "black")
            url = link(i, j) if link and value else None
            if url:
                cell.set_url(url)
                cell.set_gid(f"cell-{i}-{j}")
    for k, colour in enumerate(colours or []):
        # A strip of the class colour beside its row and under its column, outside the cells.
        ax.add_patch(Rectangle((-0.72, k - 0.45), 0.14, 0.9, facecolor=colour, edgecolor="none", clip_on=False))
        ax.add_patch(
            Rectangle((k - 0.45, n - 0.5 + 0.08), 0.9, 0.14, facecolor=colour, edgecolor="none", clip_on=False)
        )
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_aspect("equal")
    ax.set_xticks(range(n), classes, rotation=30, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("labelled")
    ax.set_title("Confusion matrix (test split)")
    return _svg(fig)


def calibration_svg(calibration: list[dict], link: Link | None = None) -> bytes:
    """A reliability diagram: per confidence bin a bar of its accuracy (link(bin) is the grid of
    its faces) and its face count, and the line of mean confidence against accuracy."""
    fig = Figure(figsize=(4.4, 3.6))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect")
    for b in calibration:
        width = b["high"] - b["low"]
        # A faint full-height band per bin, so a bin of accuracy 0 can be clicked too.
        band = ax.bar(b["low"], 1.02, width=width, align="edge", color="#2f6fed", alpha=0.06)[0]
        bar = ax.bar(b["low"], b["accuracy"], width=width, align="edge", color="#2f6fed", alpha=0.35)[0]
        ax.text((b["low"] + b["high"]) / 2, min(b["accuracy"], 0.9) + 0.03, str(b["n"]), ha="center", fontsize=7)
        url = link(b) if link else None
        if url:
            band.set_url(url)
            band.set_gid(f"band-{b['low']}-{b['high']}")
            bar.set_url(url)
            bar.set_gid(f"bin-{b['low']}-{b['high']}")
    if calibration:
        ax.plot([b["confidence"] for b in calibration], [b["accuracy"] for b in calibration], marker="o", label="model")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("confidence of the predicted class")
    ax.set_ylabel("accuracy (bars: per bin, n above)")
    ax.set_title("Calibration (test split)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    return _svg(fig)


def slices_svg(slices: dict[str, list[dict]], overall: float | None, link: Link | None = None) -> bytes:
    """Accuracy per slice value; link(kind, row) is the grid of that slice's test faces."""
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
        bars = ax.bar(
            range(len(rows)),
            accuracy,
            color="#2f6fed",
            yerr=[below, above] if has_ci else None,
            ecolor="#344054",
            capsize=3,
        )
        for x, (bar, row) in enumerate(zip(bars, rows, strict=True)):
            url = link(kind, row) if link else None
            if url:
                # A faint full-height band behind the bar: a slice of accuracy 0 is clickable too.
                band = ax.bar(x, 1.02, color="#2f6fed", alpha=0.06, zorder=0)[0]
                band.set_url(url)
                band.set_gid(f"sliceband-{kind}-{row['value']}")
                bar.set_url(url)
                bar.set_gid(f"slice-{kind}-{row['value']}")
        ax.set_xticks(range(len(rows)), [f"{r['value']}\n(n={r['n']})" for r in rows], fontsize=7)
        if overall is not None:
            ax.axhline(overall, color="#c4320a", ls="--", lw=1, label=f"overall {overall:.3f}")
            ax.legend(loc="lower right", fontsize=7)
        ax.set_ylim(0, 1.02)
        ax.set_title(f"Accuracy by {kind.replace('_', ' ')}" + (" (95% CI)" if has_ci else ""))
    return _svg(fig)


def version_plot_svg(kind: str, *, metrics: dict, classes: list[str], colours: list[str] | None = None) -> bytes | None:
    """One of a version's plots as a standalone image (no links), as the version page serves it
    and the model card ships it; None when the version has nothing to draw for that kind (no
    confusion matrix without a test evaluation, no curves without epochs)."""
    if kind == "confusion":
        matrix = metrics.get("confusion_matrix")
        return confusion_svg(matrix, classes, colours=colours) if matrix else None
    if kind == "calibration":
        return calibration_svg(metrics.get("calibration", []))
    if kind == "slices":
        return slices_svg(metrics.get("slices", {}), metrics.get("accuracy"))
    if kind == "curves":
        return curves_svg(metrics.get("history", []))
    return None
