"""A model version's model card (Mitchell et al., "Model Cards for Model Reporting", 2019): one
Markdown file with its plots as SVG, downloaded from the version page as a zip.

Every figure is the version page's own: the stored test evaluation with its Wilson intervals
(evaluation.with_intervals), the same plots (plots.version_plot_svg), the identity leakage the
evaluation stored and the disputed count of selectors.version_disputed_count. What only the card
says is read from the version's frozen snapshot: the composition of its training data per split,
class and metadata slice, and how many of those labels have changed since.

Labels, metadata values, dataset and user names come from people and labels.csv: every one goes
through `md()`, so a `|` cannot add a table column, a `[..](..)` cannot make a link, a newline
cannot start a heading, and `<script>` stays text. Matplotlib draws them as plain text (no math).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from django.core.cache import cache

from curator.models import Face
from training import selectors
from training.config import PARAMS
from training.data import SPLITS, snapshot_read
from training.evaluation import MIN_SLICE_SIZE, SLICE_NAMES, _slice_order, with_intervals
from training.models import ModelVersion

# The plots a card ships, in the order the Markdown shows them.
CARD_PLOTS = ("confusion", "calibration", "slices", "curves")
# A slice whose 95 % interval is wider than this says little about that group.
WIDE_INTERVAL = 0.2
# How many of the lowest-accuracy slices the card lists.
WORST_SLICES = 5
# Above this expected calibration error a confidence should not be read as a probability.
ECE_NOTICEABLE = 0.05
NOT_RECORDED = "(not recorded)"

# Control characters, including every kind of line break: a value stays on its line.
_LINE_BREAKS = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]+")
# Characters that start Markdown syntax inline: emphasis, code, links and images (no "[", no link:
# "(" and "!" need no escape), table cells, strikethrough, math (GitHub renders $...$) and
# headings; HTML and entities are written as entities apart.
_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_\[\]|~$#])")


def md(value) -> str:
    """A user string as literal Markdown text on one line: HTML characters as entities, Markdown
    punctuation backslash-escaped (CommonMark and GitHub tables both honour `\\|`)."""
    text = _LINE_BREAKS.sub(" ", str(value)).strip()
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", text) if text else "(empty)"


def _num(value, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "n/a"


def _accuracy(acc, low, high, n) -> str:
    """ "0.912 (95 % CI 0.889–0.931, n=312)", as the page's "0.912 (0.89–0.93, n=312)"."""
    if not isinstance(acc, (int, float)):
        return f"n/a (n={n})" if n else "n/a"
    if isinstance(high, (int, float)) and isinstance(low, (int, float)):
        return f"{acc:.3f} (95 % CI {low:.3f}–{high:.3f}, n={n})"
    return f"{acc:.3f} (n={n})"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines + [""]


def _slice_name(kind: str) -> str:
    return SLICE_NAMES.get(kind, kind.replace("_", " ").capitalize())


def _kind_order(kind: str) -> tuple:
    """Slice kinds in SLICE_NAMES's order, others after by name (PostgreSQL's jsonb keeps no
    key order, so the stored metrics cannot decide it)."""
    names = list(SLICE_NAMES)
    return (names.index(kind), "") if kind in names else (len(names), kind)


def _slice_values(cell: str) -> dict[str, str]:
    """A snapshot's slices cell, "age_band=20-39;race=white", back as a dict. A value may hold
    ";" itself (metadata is free text): a part that does not start with a slice kind belongs to
    the value before it."""
    out: dict[str, str] = {}
    kind = None
    for part in (cell or "").split(";"):
        name, sep, value = part.partition("=")
        if sep and name in SLICE_NAMES:
            kind = name
            out[kind] = value
        elif kind is not None:
            out[kind] += ";" + part
    return {k: v for k, v in out.items() if v}


@dataclass
class Composition:
    """The faces a version saw: per split and class, and per slice value, split and class."""

    classes: list[str]
    per_split: dict[str, dict[str, int]]
    # kind -> value -> (split, class) -> faces
    slices: dict[str, dict[str, Counter]] = field(default_factory=dict)
    assigned_by_job: int = 0
    relabelled: int = 0  # faces whose label today differs from the snapshot's
    gone: int = 0  # faces deleted or excluded since training

    @property
    def total(self) -> int:
        return sum(sum(row.values()) for row in self.per_split.values())


def training_composition(*, version: ModelVersion) -> Composition | None:
    """The composition of the version's training data from its snapshot; None without one (the
    page's faces-per-split counts are then all that is known)."""
    if not version.snapshot:
        return None
    try:
        rows = snapshot_read(version.snapshot)
    except (FileNotFoundError, OSError):
        return None
    classes = list(version.classes)
    per_split = {s: dict.fromkeys(classes, 0) for s in SPLITS}
    parsed = [_slice_values(row.get("slices", "")) for row in rows]
    kinds = sorted({kind for values in parsed for kind in values}, key=_kind_order)
    slices: dict[str, dict[str, Counter]] = {kind: defaultdict(Counter) for kind in kinds}
    for row, values in zip(rows, parsed, strict=True):
        split, label = row["split"], row["label"]
        per_split.setdefault(split, {}).setdefault(label, 0)
        per_split[split][label] += 1
        for kind in kinds:
            slices[kind][values.get(kind, NOT_RECORDED)][(split, label)] += 1
    labels_then = {row["face_id"]: row["label"] for row in rows}
    # One scan of the dataset's faces rather than an IN list of every snapshot id.
    faces = Face.objects.filter(dataset_id=version.dataset_id, is_excluded=False)
    now = dict(faces.values_list("pk", "label").iterator())
    return Composition(
        classes=classes,
        per_split=per_split,
        slices={
            kind: {value: values[value] for value in sorted(values, key=lambda v: (v == NOT_RECORDED, _slice_order(v)))}
            for kind, values in slices.items()
        },
        assigned_by_job=sum(1 for row in rows if str(row.get("split_assigned_by_job")) == "1"),
        relabelled=sum(1 for face_id, label in labels_then.items() if face_id in now and now[face_id] != label),
        gone=sum(1 for face_id in labels_then if face_id not in now),
    )


@dataclass
class ModelCard:
    version: ModelVersion
    markdown: str
    plots: dict[str, bytes]  # kind -> SVG

    @property
    def zip_name(self) -> str:
        return f"model-card-v{self.version.number}.zip"

    def zip_bytes(self) -> bytes:
        """MODEL_CARD.md and plots/<kind>.svg, which the Markdown links relatively."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
            bundle.writestr("MODEL_CARD.md", self.markdown)
            for kind, svg in self.plots.items():
                bundle.writestr(f"plots/{kind}.svg", svg)
        return buffer.getvalue()


def card_plot_kinds(metrics: dict) -> list[str]:
    """The version page's plots that have something to show: a confusion matrix and a
    calibration diagram need a test evaluation, the slice plot metadata, the curves epochs."""
    wanted = {
        "confusion": bool(metrics.get("confusion_matrix")),
        "calibration": bool(metrics.get("calibration")),
        "slices": any((metrics.get("slices") or {}).values()),
        "curves": bool(metrics.get("history")),
    }
    return [kind for kind in CARD_PLOTS if wanted[kind]]


def _card_plots(version: ModelVersion, metrics: dict, kinds: list[str]) -> dict[str, bytes]:
    """The plots drawn, cached like the version page's by the version and its metrics (they
    change only when it is evaluated again): drawing them is most of a card's time."""
    from training import plots

    digest = hashlib.sha1(json.dumps(metrics, sort_keys=True, default=str).encode()).hexdigest()[:16]
    colours = selectors.version_class_colours(version=version)
    key = f"training:card-plots:{version.pk}:{digest}:{hashlib.sha1(str(colours).encode()).hexdigest()[:8]}"
    cached = cache.get(key)
    if cached is not None:
        return cached
    out = {}
    for kind in kinds:
        svg = plots.version_plot_svg(kind, metrics=metrics, classes=version.classes, colours=colours)
        if svg is not None:
            out[kind] = svg
    cache.set(key, out, 3600)
    return out


def model_card_build(
    *, version: ModelVersion, plot_url: Callable[[str], str] | None = None, draw_plots: bool = True
) -> ModelCard:
    """The card of one version. `plot_url(kind)` is where the Markdown finds a plot: plots/<kind>.svg
    beside it in the zip by default (the Markdown alone links the version page's plot URLs, and
    needs no drawing: draw_plots=False)."""
    metrics = with_intervals(version.metrics or {})
    kinds = card_plot_kinds(metrics)
    plots = _card_plots(version, metrics, kinds) if draw_plots else {}
    composition = training_composition(version=version)
    writer = _CardWriter(
        version=version,
        metrics=metrics,
        composition=composition,
        plots=list(plots) if draw_plots else kinds,
        plot_url=plot_url or (lambda kind: f"plots/{kind}.svg"),
        disputed=selectors.version_disputed_count(version=version),
    )
    return ModelCard(version=version, markdown=writer.write(), plots=plots)


@dataclass
class _CardWriter:
    version: ModelVersion
    metrics: dict
    composition: Composition | None
    plots: list[str]
    plot_url: Callable[[str], str]
    disputed: int
    lines: list[str] = field(default_factory=list)

    @property
    def evaluated(self) -> bool:
        return isinstance(self.metrics.get("n_test"), int) and self.metrics.get("accuracy") is not None

    def write(self) -> str:
        for section in (
            self._header,
            self._details,
            self._intended_use,
            self._training_data,
            self._metrics,
            self._slices,
            self._leakage,
            self._calibration,
            self._configuration,
            self._limitations,
        ):
            section()
        return "\n".join(self.lines).rstrip() + "\n"

    def _add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def _plot(self, kind: str, alt: str) -> None:
        if kind in self.plots:
            self._add(f"![{alt}]({self.plot_url(kind)})", "")

    def _classes(self) -> str:
        return ", ".join(md(c) for c in self.version.classes) or "none"

    # --- sections ---------------------------------------------------------------------------

    def _header(self) -> None:
        v = self.version
        self._add(f"# Model card: {md(v.dataset.name)}, version {v.number}", "")
        if self.evaluated:
            m = self.metrics
            self._add(
                f"Test accuracy **{m['accuracy']:.4f}** "
                f"(95 % Wilson interval {_num(m.get('accuracy_ci_low'))}–{_num(m.get('accuracy_ci_high'))}, "
                f"{m['n_test']} test faces).",
                "",
            )
        else:
            self._add("**This version has no test evaluation**: no accuracy can be claimed for it.", "")
        self._add(
            "Written by Curator from the version's stored evaluation and its frozen snapshot of the "
            "faces, labels and splits it was trained and tested on; the figures are the version page's.",
            "",
        )

    def _details(self) -> None:
        v, job = self.version, self.version.job
        rows = [
            ["Dataset", md(v.dataset.name)],
            ["Version", f"{v.number}{' (active)' if v.is_active else ''}"],
            ["Architecture", md(v.get_architecture_display())],
            ["Classes", self._classes()],
            ["Registered", v.created_at.strftime("%Y-%m-%d %H:%M UTC") if v.created_at else "n/a"],
        ]
        if job is not None:
            who = job.created_by.get_username() if job.created_by else "(deleted user)"
            rows.append(["Trained by", md(who)])
            for name, at in (
                ("Job queued", job.created_at),
                ("Training started", job.started_at),
                ("Training finished", job.finished_at),
            ):
                if at:
                    rows.append([name, at.strftime("%Y-%m-%d %H:%M UTC")])
            rows.append(["Training job", str(job.pk)])
        else:
            rows.append(["Trained by", "unknown (its training job was deleted)"])
        rows.append(["TensorFlow / Keras", f"{md(v.tf_version or 'n/a')} / {md(v.keras_version or 'n/a')}"])
        rows.append(["Artifact", md(v.artifact) if v.artifact else "none (its config holds everything)"])
        rows.append(["Snapshot", md(v.snapshot) if v.snapshot else "none"])
        ds = v.dataset
        rows.append(
            [
                "Input",
                f"face crops aligned by Curator: {ds.crop_size} px square, {md(ds.get_detector_display())} "
                f"detector, 68 dlib landmarks, affine onto OpenFace's template ({md(ds.get_landmark_set_display())})",
            ]
        )
        self._add("## Model details", "", *_table(["", ""], rows))

    def _intended_use(self) -> None:
        self._add(
            "## Intended use",
            "",
            f"Classifying aligned face crops into the dataset's classes ({self._classes()}) to help people "
            "curate a face dataset: finding likely mislabelled faces, suggesting labels for a person to accept "
            "or reject, and ranking faces for review. A person checks every label that matters.",
            "",
            "## Out-of-scope uses",
            "",
            "- **Not identity**: the labels describe how a face looks in one photo, not who the person is "
            "or how they identify. Gender read from a face is not a person's gender.",
            "- **Not surveillance**: no tracking, recognition or profiling of people in photos or video.",
            "- **Not decisions about people**: no access, hiring, policing, health, credit, or any decision "
            "that affects the person pictured.",
            "- **Not other populations without measuring**: the figures below hold for faces like this "
            "dataset's test split, and only there.",
            "",
            "Error rates of face gender classifiers differ by skin type and age. Buolamwini and Gebru (2018), "
            "*Gender Shades: Intersectional Accuracy Disparities in Commercial Gender Classification*, found "
            "commercial classifiers erred on up to 34.7 % of darker-skinned women against 0.8 % of "
            "lighter-skinned men; children's and older people's faces are classified less reliably too. "
            "Read the per-slice figures below before trusting the overall one, and measure on the people "
            "the model will meet.",
            "",
        )

    def _training_data(self) -> None:
        self._add("## Training data", "")
        comp = self.composition
        if comp is None:
            counts = self.metrics.get("counts") or {}
            if counts:
                classes = sorted({c for row in counts.values() for c in row})
                rows = [[md(s)] + [str(counts[s].get(c, 0)) for c in classes] for s in counts]
                self._add(
                    "This version has no snapshot, so its data is known only as faces per split and class:",
                    "",
                    *_table(["split"] + [md(c) for c in classes], rows),
                )
            else:
                self._add("This version has no snapshot and no stored counts: its training data is unknown.", "")
            return
        classes = comp.classes
        rows = [
            [split]
            + [str(comp.per_split.get(split, {}).get(c, 0)) for c in classes]
            + [str(sum(comp.per_split.get(split, {}).values()))]
            for split in SPLITS
        ]
        rows.append(
            ["all"] + [str(sum(comp.per_split[s].get(c, 0) for s in SPLITS)) for c in classes] + [str(comp.total)]
        )
        self._add(
            f"{comp.total} labelled, included faces, frozen when the version was trained. Training uses "
            "`train`, early stopping and model choice use `val`, and every figure below is on `test`, "
            "which the model never trained or selected on.",
            "",
            "### Faces per split and class",
            "",
            *_table(["split"] + [md(c) for c in classes] + ["total"], rows),
        )
        if comp.assigned_by_job:
            self._add(
                f"{comp.assigned_by_job} faces had no split in the dataset; the training job assigned them a "
                "stratified 70/15/15 split of its own (recorded in the snapshot).",
                "",
            )
        if not comp.slices:
            self._add(
                "The faces carry no metadata slices (age band, race, source, quality band): the composition "
                "of the data by age or skin type is unknown.",
                "",
            )
            return
        self._add("### Faces per metadata slice", "")
        header_classes = [f"train: {md(c)}" for c in classes]
        for kind, values in comp.slices.items():
            rows = []
            for value, cells in values.items():
                row = [md(value) if value != NOT_RECORDED else NOT_RECORDED]
                row += [str(cells.get(("train", c), 0)) for c in classes]
                row += [str(sum(n for (s, _), n in cells.items() if s == split)) for split in ("val", "test")]
                rows.append(row)
            self._add(
                f"**{md(_slice_name(kind))}**",
                "",
                *_table([md(_slice_name(kind))] + header_classes + ["val", "test"], rows),
            )

    def _metrics(self) -> None:
        m = self.metrics
        self._add("## Test metrics", "")
        if not self.evaluated:
            self._add("None: this version was not evaluated on a test split.", "")
            return
        rows = [
            [
                "Accuracy",
                _accuracy(m["accuracy"], m.get("accuracy_ci_low"), m.get("accuracy_ci_high"), m["n_test"]),
            ],
            ["Balanced accuracy", _num(m.get("balanced_accuracy"), 4)],
            ["Macro F1", _num(m.get("macro_f1"), 4)],
            ["ROC AUC", _num(m.get("roc_auc"), 4)],
            ["Expected calibration error", _num(m.get("ece"), 4)],
            ["Test faces", str(m["n_test"])],
        ]
        errors = m["n_test"] - round(m["accuracy"] * m["n_test"])
        rows.append(["Test errors", str(errors)])
        self._add(
            "95 % intervals are Wilson score intervals of a proportion; the other figures are point estimates.",
            "",
            *_table(["metric", "value"], rows),
        )
        if m.get("per_class"):
            rows = [
                [md(r["class"]), _num(r.get("precision"), 4), _num(r.get("recall"), 4), _num(r.get("f1"), 4)]
                + [str(r.get("support", 0))]
                for r in m["per_class"]
            ]
            self._add("### Per class", "", *_table(["class", "precision", "recall", "F1", "test faces"], rows))
        self._plot("confusion", "Confusion matrix of the test split")
        if "curves" in self.plots:
            self._add("### Training curves", "")
            self._plot("curves", "Loss and accuracy per epoch, training and validation")

    def _slices(self) -> None:
        self._add("## Accuracy per slice", "")
        stored = self.metrics.get("slices") or {}
        slices = {kind: stored[kind] for kind in sorted(stored, key=_kind_order) if stored[kind]}
        if not self.evaluated:
            self._add(
                "Unknown: the version has no test evaluation, so nothing here shows how the model does "
                "for any group of people.",
                "",
            )
            return
        if not slices:
            self._add(
                "The test faces carry no metadata to slice by, so accuracy per age band, race, source or "
                "quality is unknown. Nothing here shows how the model does for any group of people.",
                "",
            )
            return
        overall = self.metrics.get("accuracy")
        self._add(
            "Each slice's accuracy with its 95 % Wilson interval and test faces. A slice of a few dozen faces "
            "has a wide interval: a gap between two slices whose intervals overlap may be noise.",
            "",
        )
        for kind, rows in slices.items():
            table = [
                [
                    md(r["value"]),
                    _accuracy(r.get("accuracy"), r.get("ci_low"), r.get("ci_high"), r.get("n")),
                    str(r["n"] - round(r["accuracy"] * r["n"])) if isinstance(r.get("accuracy"), (int, float)) else "",
                ]
                for r in rows
            ]
            self._add(f"**{md(_slice_name(kind))}**", "", *_table([md(_slice_name(kind)), "accuracy", "errors"], table))
        self._plot("slices", "Accuracy per slice with 95 % intervals")
        self._add("### Worst slices", "")
        ranked = sorted(
            (
                (kind, r)
                for kind, rows in slices.items()
                for r in rows
                if r["n"] >= MIN_SLICE_SIZE and isinstance(r.get("accuracy"), (int, float))
            ),
            key=lambda kr: (kr[1]["accuracy"], -kr[1]["n"]),
        )[:WORST_SLICES]
        if not ranked:
            self._add(f"No slice has {MIN_SLICE_SIZE} or more test faces: none can be ranked.", "")
        else:
            rows = []
            for kind, r in ranked:
                below = isinstance(overall, (int, float)) and isinstance(r.get("ci_high"), (int, float))
                verdict = "yes" if below and r["ci_high"] < overall else "no (interval includes it)"
                rows.append(
                    [
                        md(_slice_name(kind)),
                        md(r["value"]),
                        _accuracy(r["accuracy"], r.get("ci_low"), r.get("ci_high"), r["n"]),
                        verdict,
                    ]
                )
            self._add(
                ("The lowest accuracy" if len(ranked) == 1 else f"The {len(ranked)} lowest accuracies")
                + f" among slices of {MIN_SLICE_SIZE}+ test faces, and whether "
                "the whole interval lies below the overall accuracy.",
                "",
                *_table(["slice", "value", "accuracy", "below overall"], rows),
            )
        bias = self.metrics.get("bias") or {}
        for kind, b in sorted(bias.items(), key=lambda kb: _kind_order(kb[0])):
            worst, best = b.get("worst") or {}, b.get("best") or {}
            self._add(
                f"- Gap across {md(b.get('label') or _slice_name(kind)).lower()}: **{_num(b.get('gap'))}**, "
                f"{md(worst.get('value', ''))} {_accuracy(worst.get('accuracy'), worst.get('ci_low'), worst.get('ci_high'), worst.get('n'))} "
                f"against {md(best.get('value', ''))} {_accuracy(best.get('accuracy'), best.get('ci_low'), best.get('ci_high'), best.get('n'))}."
            )
        if self.metrics.get("bias"):
            self._add("")

    def _leakage(self) -> None:
        self._add("## Identity leakage between train and test", "")
        leak = self.metrics.get("identity_leakage")
        if not self.evaluated:
            self._add("Not measured: the version has no test evaluation.", "")
        elif not leak:
            self._add(
                "Not measured for this version (identity clusters could not be computed when it was "
                "evaluated): the test figures may include people the model trained on.",
                "",
            )
        else:
            clustered = (
                f" ({leak['clustered']} of them have an identity cluster)" if leak["clustered"] < leak["test"] else ""
            )
            self._add(
                f"**{leak['leaked']} of the {leak['test']} test faces** share an identity cluster (the same "
                f"person, by metadata or by dlib's face descriptor) with training faces{clustered}."
                + (
                    " Their accuracy says less about people the model never saw; the test figures are "
                    "optimistic by an unknown amount."
                    if leak["leaked"]
                    else " The test figures are about people the model never trained on."
                ),
                "",
            )

    def _calibration(self) -> None:
        self._add("## Calibration", "")
        bins = self.metrics.get("calibration") or []
        if not bins:
            self._add("Not measured: the version has no test evaluation.", "")
            return
        ece = self.metrics.get("ece")
        self._add(
            f"Expected calibration error **{_num(ece, 4)}** over {len(bins)} confidence bins: the mean gap, "
            "weighted by faces, between the confidence of the predicted class and how often it is right.",
            "",
            *_table(
                ["confidence", "test faces", "accuracy", "mean confidence"],
                [
                    [f"{b['low']:.1f}–{b['high']:.1f}", str(b["n"]), _num(b["accuracy"]), _num(b["confidence"])]
                    for b in bins
                ],
            ),
        )
        self._plot("calibration", "Reliability diagram of the test split")

    def _configuration(self) -> None:
        v = self.version
        m = self.metrics
        self._add("## Training configuration", "")
        rows = []
        # Hyperparameters in the form's order, then what the job chose or measured, by name
        # (jsonb keeps no key order).
        order = list(PARAMS)
        settings = sorted(
            selectors.version_settings(version=v),
            key=lambda kv: (order.index(kv[0]), "") if kv[0] in order else (len(order), kv[0]),
        )
        for key, value in settings:
            param = PARAMS.get(key)
            rows.append(
                [
                    f"`{key}`" if re.fullmatch(r"[a-z0-9_]+", key) else md(key),
                    md(value),
                    md(param.help) if param else "",
                ]
            )
        if rows:
            self._add(*_table(["setting", "value", "meaning"], rows))
        else:
            self._add("No settings were recorded.", "")
        if v.config.get("head") == "linear":
            self._add("The linear head won the head choice: it has no epochs.", "")
        elif m.get("history"):
            self._add(f"Best epoch {m.get('best_epoch')} of {len(m['history'])} ({md(m.get('stopped', ''))}).", "")
        if isinstance(m.get("train_seconds"), (int, float)):
            self._add(f"Training took {m['train_seconds']:.1f} s.", "")

    def _limitations(self) -> None:
        self._add("## Known limitations", "")
        items = self._limitation_items()
        self._add(*[f"- {item}" for item in items], "")

    def _limitation_items(self) -> list[str]:
        m, v, comp = self.metrics, self.version, self.composition
        items = []
        if not self.evaluated:
            items.append("No test evaluation: nothing is known about this version's accuracy.")
        else:
            width = (m.get("accuracy_ci_high") or 0) - (m.get("accuracy_ci_low") or 0)
            items.append(
                f"The test split has {m['n_test']} faces: the overall accuracy is known to within a 95 % "
                f"interval {width:.3f} wide."
            )
        if len(v.classes) == 2:
            items.append(
                f"Two classes only ({self._classes()}): every face gets one of them, including people who are "
                'neither, and the model cannot say "none" or "not sure" except by a low confidence.'
            )
        small = [
            f"{md(_slice_name(kind)).lower()} {md(r['value'])} (n={r['n']})"
            for kind, rows in sorted((m.get("slices") or {}).items(), key=lambda kr: _kind_order(kr[0]))
            for r in rows
            if r["n"] < MIN_SLICE_SIZE
            or (isinstance(r.get("ci_high"), (int, float)) and r["ci_high"] - r["ci_low"] > WIDE_INTERVAL)
        ]
        if small:
            items.append(
                f"Slices too small to judge (fewer than {MIN_SLICE_SIZE} test faces, or a 95 % interval wider "
                f"than {WIDE_INTERVAL}): " + ", ".join(small) + "."
            )
        kinds = set(m.get("slices") or {})
        if comp is not None:
            kinds |= set(comp.slices)
        if "race" not in kinds:
            items.append(
                "No skin type or race is recorded on the faces: the Gender Shades disparities cannot be "
                "measured on this dataset."
            )
        else:
            items.append(
                "No skin type (Fitzpatrick) is recorded; `race` is a coarse proxy for the skin-type "
                "disparities Gender Shades measured."
            )
        if "age_band" not in kinds:
            items.append("No age is recorded on the faces: accuracy for children and older people is unknown.")
        if comp is not None:
            missing = {
                kind: sum(cells[("test", c)] for cells in [values.get(NOT_RECORDED, Counter())] for c in comp.classes)
                for kind, values in comp.slices.items()
            }
            n_test = sum(comp.per_split.get("test", {}).values())
            for kind, n in missing.items():
                if n:
                    items.append(
                        f"{n} of the {n_test} test faces have no {md(_slice_name(kind)).lower()}: the slices "
                        "above describe the others only."
                    )
        noise = (
            f"Label noise: the model disagrees with the current label of {self.disputed} included "
            "face(s) (its review queue lists them)"
        )
        if comp is not None:
            noise += (
                f"; {comp.relabelled} of the {comp.total} faces it saw have been relabelled since it was trained, "
                f"and {comp.gone} excluded or deleted"
            )
        items.append(noise + ". Its test labels are people's labels and may be wrong too.")
        leak = m.get("identity_leakage")
        if leak and leak.get("leaked"):
            items.append(
                f"Identity leakage: {leak['leaked']} test faces show people who are also in the training split; "
                "assign splits again (identity-aware) and retrain for an unbiased test."
            )
        elif self.evaluated and not leak:
            items.append("Identity leakage between train and test was not measured.")
        if isinstance(m.get("ece"), (int, float)) and m["ece"] > ECE_NOTICEABLE:
            items.append(f"Calibration error {m['ece']:.3f}: a confidence is not the probability of being right.")
        if comp is None:
            items.append("No snapshot: the exact faces, labels and splits it used cannot be checked.")
        return items
