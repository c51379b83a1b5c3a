"""Each model version exports a model card (issue 20): MODEL_CARD.md with its plots as SVG, in
a zip downloaded from the version page. Its figures are the version page's; user strings cannot
break its Markdown; it is as private as the version; and a version without a test evaluation or
metadata gets a card that says so."""

import io
import re
import zipfile

import numpy as np
import pytest
from markdown_it import MarkdownIt

from curator.models import Dataset, Face, Membership
from tests.labeling.factories import make_faces
from tests.training.test_drilldown_links import build_version
from training.data import snapshot_write, training_data_collect
from training.evaluation import MIN_SLICE_SIZE, wilson_interval
from training.model_card import md, model_card_build
from training.models import ModelVersion, TrainingJob
from training.services import _store_predictions, model_version_evaluate

HOSTILE = "a|b*c_[x](http://evil.example)<script>alert(1)</script>\n# heading $x^2$ `code` ~~s~~ &amp;"
# Labels are at most 64 characters.
HOSTILE_CLASSES = ["f|*[x](http://evil.example)<script>x</script>\n# h", "male | <b>bold</b> _u_"]


def card_zip(client, version) -> tuple[str, dict[str, bytes], object]:
    response = client.get(f"/training/versions/{version.pk}/model-card.zip")
    assert response.status_code == 200, response.content[:500]
    assert response["Content-Type"] == "application/zip"
    assert f'filename="model-card-v{version.number}.zip"' in response["Content-Disposition"]
    with zipfile.ZipFile(io.BytesIO(response.content)) as bundle:
        files = {name: bundle.read(name) for name in bundle.namelist()}
    return files["MODEL_CARD.md"].decode(), files, response


def render(markdown: str) -> tuple[str, list]:
    """HTML as a CommonMark renderer with GitHub's tables makes it (raw HTML allowed, as GitHub
    allows some: only escaping keeps it out), and the token stream."""
    parser = MarkdownIt("commonmark", {"html": True}).enable("table")
    return parser.render(markdown), parser.parse(markdown)


def tables(tokens) -> list[list[int]]:
    """Cells per row of every table, header row first."""
    out, cells = [], None
    for token in tokens:
        if token.type == "table_open":
            out.append([])
        elif token.type == "tr_open":
            cells = 0
        elif token.type in ("th_open", "td_open"):
            cells += 1
        elif token.type == "tr_close":
            out[-1].append(cells)
    return out


@pytest.fixture
def version(dataset):
    make_faces(dataset, 120, labels=["female", "male"])
    version = build_version(dataset)
    job = TrainingJob.objects.create(
        dataset=dataset, created_by=dataset.created_by, architecture="embedding", status="succeeded"
    )
    version.job = job
    version.config = {"head": "dense", "epochs": 150, "learning_rate": 0.001, "seed": 0, "dropout": 0.3}
    version.metrics["identity_leakage"] = {"leaked": 2, "test": version.metrics["n_test"], "clustered": 15}
    version.save(update_fields=["job", "config", "metrics"])
    return version


def test_the_card_holds_every_section_with_the_version_pages_figures(alice_client, version):
    markdown, files, _ = card_zip(alice_client, version)
    m = version.metrics
    page = alice_client.get(f"/training/versions/{version.pk}/").content.decode()
    # The headline accuracy is the page's, to the page's 4 places.
    shown = re.search(r'id="test-accuracy">([\d.]+)<', page).group(1)
    assert f"Test accuracy **{shown}**" in markdown
    for heading in (
        "## Model details",
        "## Intended use",
        "## Out-of-scope uses",
        "## Training data",
        "## Test metrics",
        "## Accuracy per slice",
        "### Worst slices",
        "## Identity leakage between train and test",
        "## Calibration",
        "## Training configuration",
        "## Known limitations",
    ):
        assert heading in markdown
    assert "Buolamwini and Gebru (2018)" in markdown and "Gender Shades" in markdown
    assert "Not surveillance" in markdown and "Not identity" in markdown
    # The leakage the evaluation stored, and the page's count of disputed faces.
    assert f"**2 of the {m['n_test']} test faces**" in markdown
    assert re.search(r'id="disputed-link"[^>]*>(\d+) face', page).group(1) in re.search(
        r"current label of (\d+) included", markdown
    ).group(1)
    # Calibration: the stored ECE and one row per stored bin.
    assert f"Expected calibration error **{m['ece']:.4f}**" in markdown
    for b in m["calibration"]:
        assert f"| {b['low']:.1f}–{b['high']:.1f} | {b['n']} | {b['accuracy']:.3f} |" in markdown
    # Every hyperparameter of the config, with its meaning.
    for key, value in version.config.items():
        assert f"| `{key}` | {md(value)} |" in markdown
    assert "Trained by | alice" in markdown
    # The plots the Markdown links are the zip's, and only those.
    linked = set(re.findall(r"\]\((plots/[a-z]+\.svg)\)", markdown))
    assert linked == {name for name in files if name.startswith("plots/")}
    assert {"plots/confusion.svg", "plots/calibration.svg", "plots/slices.svg"} <= linked
    for name in linked:
        assert files[name].lstrip().startswith(b"<?xml") and b"<svg" in files[name]


def test_the_training_data_is_counted_per_split_class_and_slice(version):
    card = model_card_build(version=version).markdown
    data = training_data_collect(dataset=version.dataset, seed=0)
    counts = data.counts()
    for split in ("train", "val", "test"):
        row = f"| {split} | {counts[split]['female']} | {counts[split]['male']} | {sum(counts[split].values())} |"
        assert row in card
    # Per slice value: train faces of each class, then val and test faces.
    cells = {}
    for e in data.examples:
        band = e.metadata.get("age_band")
        key = (band, e.split, e.label if e.split == "train" else "")
        cells[key] = cells.get(key, 0) + 1
    for band in {e.metadata["age_band"] for e in data.examples}:
        row = "| {} | {} | {} | {} | {} |".format(
            md(band),
            cells.get((band, "train", "female"), 0),
            cells.get((band, "train", "male"), 0),
            cells.get((band, "val", ""), 0),
            cells.get((band, "test", ""), 0),
        )
        assert row in card, row


def test_accuracies_carry_wilson_intervals_overall_and_per_slice(version):
    card = model_card_build(version=version).markdown
    m = version.metrics
    n = m["n_test"]
    low, high = wilson_interval(round(m["accuracy"] * n), n)
    assert f"{m['accuracy']:.3f} (95 % CI {low:.3f}–{high:.3f}, n={n})" in card
    rows = [r for rows in m["slices"].values() for r in rows]
    assert rows
    for r in rows:
        low, high = wilson_interval(round(r["accuracy"] * r["n"]), r["n"])
        assert f"| {md(r['value'])} | {r['accuracy']:.3f} (95 % CI {low:.3f}–{high:.3f}, n={r['n']}) |" in card
    # The worst slice (of 10+ faces) heads the worst-slices table.
    worst = min((r for r in rows if r["n"] >= MIN_SLICE_SIZE), key=lambda r: r["accuracy"])
    section = card.split("### Worst slices")[1]
    first_row = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line][1]
    assert f"{worst['accuracy']:.3f}" in first_row


def hostile_version(dataset: Dataset) -> ModelVersion:
    """A version of a dataset whose name, classes and metadata are Markdown and HTML."""
    classes = HOSTILE_CLASSES
    dataset.name = f"faces {HOSTILE}"
    dataset.classes = classes
    dataset.save(update_fields=["name", "classes"])
    make_faces(
        dataset,
        40,
        labels=classes,
        metadata=[{"race": HOSTILE if i % 2 else "[link](javascript:x)", "age": 20 + i % 30} for i in range(40)],
    )
    data = training_data_collect(dataset=dataset, seed=0)
    snapshot = snapshot_write(data=data, path=f"datasets/{dataset.pk}/models/v1-snapshot.csv")
    version = ModelVersion.objects.create(
        dataset=dataset, number=1, architecture="embedding", snapshot=snapshot, classes=data.classes
    )
    faces = list(Face.objects.filter(dataset=dataset).order_by("id"))
    probs = [[0.8, 0.2] if (f.label == classes[0]) == bool(k % 4) else [0.3, 0.7] for k, f in enumerate(faces)]
    _store_predictions(version, [(f.pk, f.label) for f in faces], np.array(probs, dtype=np.float32), version.classes)
    version.metrics = model_version_evaluate(model_version=version, data=data)
    version.config = {"seed": 0, "note": HOSTILE}
    version.save(update_fields=["metrics", "config"])
    return version


def test_labels_metadata_and_names_cannot_break_the_markdown(alice_client, dataset):
    version = hostile_version(dataset)
    markdown, files, _ = card_zip(alice_client, version)
    html, tokens = render(markdown)
    # No HTML, link or image of the user's: only the card's own images.
    assert "<script" not in html and "<b>" not in html
    assert "href=" not in html and "<a " not in html
    assert all(src.startswith("plots/") for src in re.findall(r'<img src="([^"]*)"', html))
    # No heading of the user's: the card's headings are all there is.
    headings = [t.content for i, t in enumerate(tokens) if t.type == "inline" and tokens[i - 1].type == "heading_open"]
    assert all(not h.startswith("heading") for h in headings)
    assert len([line for line in markdown.splitlines() if line.startswith("#")]) == len(headings)
    # Every table keeps its columns.
    found = tables(tokens)
    assert len(found) >= 6
    for rows in found:
        assert len(set(rows)) == 1, rows
    # The text survives: a reader sees the strings as they were written (newlines as spaces).
    assert "a|b*c_[x](http://evil.example)&lt;script&gt;alert(1)&lt;/script&gt; # heading $x^2$" in html
    # Matplotlib drew them as plain text in the plots.
    assert b"$x^2$" in files["plots/slices.svg"] and b"<script>" not in files["plots/slices.svg"]
    # A metadata value holding ";" is one slice value in the training data's table too.
    assert (
        "| a\\|b\\*c\\_\\[x\\](http://evil.example)&lt;script&gt;alert(1)&lt;/script&gt; \\# heading \\$x^2\\$ \\`code\\` \\~\\~s\\~\\~ &amp;amp; | 0 | 14 |"
        in markdown
    )


def test_md_escapes_one_line_of_literal_text():
    assert md("a|b") == "a\\|b"
    assert md("<i>x</i> & y") == "&lt;i&gt;x&lt;/i&gt; &amp; y"
    assert md("line\r\n# two") == "line \\# two"
    assert md("![a](b) *c* _d_ `e` $f$ ~g~") == "!\\[a\\](b) \\*c\\* \\_d\\_ \\`e\\` \\$f\\$ \\~g\\~"
    assert md("race;a=b") == "race;a=b"
    assert md("") == "(empty)"


def test_everyone_who_may_see_the_version_may_download_its_card(
    client, alice_client, bob_client, charlie_client, version
):
    url = f"/training/versions/{version.pk}/model-card.zip"
    assert alice_client.get(url).status_code == 200
    assert bob_client.get(url).status_code == 200  # an annotator sees the version, and its card
    assert charlie_client.get(url).status_code == 404
    response = client.get(url)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    # The button is on the page for the annotator too.
    page = bob_client.get(f"/training/versions/{version.pk}/").content.decode()
    assert f'href="/training/versions/{version.pk}/model-card.zip"' in page


def test_another_datasets_version_is_a_404(alice, charlie, charlie_client, version):
    other = Dataset.objects.create(name="charlie's", created_by=charlie)
    Membership.objects.create(dataset=other, user=charlie, role=Membership.Role.CURATOR)
    mine = ModelVersion.objects.create(dataset=other, number=1, architecture="embedding", classes=["female", "male"])
    assert charlie_client.get(f"/training/versions/{mine.pk}/model-card.zip").status_code == 200
    assert charlie_client.get(f"/training/versions/{version.pk}/model-card.zip").status_code == 404
    assert charlie_client.get(f"/training/versions/{version.pk}/model-card.md").status_code == 404


def test_a_version_without_evaluation_snapshot_or_slices_gets_an_honest_card(alice_client, dataset):
    version = ModelVersion.objects.create(
        dataset=dataset, number=3, architecture="pretrained", classes=["female", "male"]
    )
    markdown, files, _ = card_zip(alice_client, version)
    assert set(files) == {"MODEL_CARD.md"}  # nothing to plot
    assert "**This version has no test evaluation**: no accuracy can be claimed for it." in markdown
    assert "None: this version was not evaluated on a test split." in markdown
    assert "Unknown: the version has no test evaluation" in markdown
    assert "No snapshot: the exact faces, labels and splits it used cannot be checked." in markdown
    assert "Trained by | unknown" in markdown
    assert "n/a" not in markdown.split("## Test metrics")[1].split("##")[0]  # no table of empty figures


def test_a_version_whose_faces_have_no_metadata_says_so(alice_client, dataset):
    make_faces(dataset, 60, labels=["female", "male"], metadata=[{} for _ in range(60)])
    Face.objects.filter(dataset=dataset).update(sharpness=None)  # no quality band either
    version = build_version(dataset)
    markdown, files, _ = card_zip(alice_client, version)
    assert "plots/slices.svg" not in files and "plots/confusion.svg" in files
    assert "The test faces carry no metadata to slice by" in markdown
    assert "The faces carry no metadata slices" in markdown
    assert "No skin type or race is recorded" in markdown
    assert "No age is recorded" in markdown
    assert "Identity leakage between train and test was not measured." in markdown or "**0 of the" in markdown


def test_the_markdown_alone_links_the_version_pages_plots(alice_client, version):
    response = alice_client.get(f"/training/versions/{version.pk}/model-card.md")
    assert response.status_code == 200
    assert f'filename="model-card-v{version.number}.md"' in response["Content-Disposition"]
    body = response.content.decode()
    url = f"http://testserver/training/versions/{version.pk}/plots/confusion.svg"
    assert f"]({url})" in body
    assert alice_client.get(url).status_code == 200
    version.refresh_from_db()
    assert (
        body
        == model_card_build(
            version=version, plot_url=lambda kind: f"http://testserver/training/versions/{version.pk}/plots/{kind}.svg"
        ).markdown
    )


def test_label_noise_counts_faces_relabelled_or_excluded_since_training(alice, version):
    from labeling import services as labeling_services

    faces = list(Face.objects.filter(dataset=version.dataset).order_by("id")[:3])
    labeling_services.faces_update(
        user=alice, dataset=version.dataset, faces=[faces[0].pk, faces[1].pk], changes={"label": "male"}
    )
    Face.objects.filter(pk=faces[2].pk).update(is_excluded=True)
    relabelled = sum(1 for f in faces[:2] if f.label != "male")
    card = model_card_build(version=version).markdown
    total = Face.objects.filter(dataset=version.dataset).count()
    assert f"{relabelled} of the {total} faces it saw have been relabelled since it was trained" in card
    assert "and 1 excluded or deleted" in card
