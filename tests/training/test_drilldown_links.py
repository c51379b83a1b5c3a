"""From analysis to data: every figure that counts faces (a confusion cell, a slice bar, a
calibration bin, a class's errors, a histogram bar, a curation count, a compare row) links to the
grid, and the grid shows exactly the faces the figure counts."""

import html
import re
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest

from curator.models import Face
from labeling import services as labeling_services
from labeling.filters import face_filter
from labeling.selectors import histogram_edges, quality_histogram_counts
from tests.labeling.factories import make_faces
from training.data import snapshot_write, training_data_collect
from training.evaluation import bias_summary, with_intervals
from training.models import ModelVersion, Prediction
from training.services import _store_predictions, model_version_evaluate

LINK = re.compile(r'<g id="([^"]+)">\s*<a xlink:href="([^"]+)"')


def build_version(dataset, *, number: int = 1, flip: int = 5) -> ModelVersion:
    """A version as training leaves one, without TensorFlow: the job's data (splits chosen by
    the job), its snapshot, stored predictions (every `flip`-th face wrong, confidences spread
    over 0.5..0.99) and the evaluation from those predictions."""
    data = training_data_collect(dataset=dataset, seed=0)
    snapshot = snapshot_write(data=data, path=f"datasets/{dataset.pk}/models/v{number}-snapshot.csv")
    version = ModelVersion.objects.create(
        dataset=dataset, number=number, architecture="embedding", snapshot=snapshot, classes=data.classes
    )
    rows, probs = [], []
    for k, face in enumerate(Face.objects.filter(dataset=dataset).order_by("id")):
        right = face.label or "female"
        predicted = right if k % flip else ("male" if right == "female" else "female")
        confidence = 0.5 + ((k * 37) % 50) / 100
        p = [confidence, 1 - confidence] if predicted == "female" else [1 - confidence, confidence]
        rows.append((face.pk, face.label))
        probs.append(p)
    _store_predictions(version, rows, np.array(probs, dtype=np.float32), version.classes)
    version.metrics = model_version_evaluate(model_version=version, data=data)
    version.save(update_fields=["metrics"])
    return version


@pytest.fixture
def faces(dataset):
    # Sharpness 10..300 spreads the faces over the blurry / medium / sharp bands.
    return make_faces(dataset, 120, labels=["female", "male"])


@pytest.fixture
def version(dataset, faces):
    return build_version(dataset)


def grid_count(client, url: str) -> int:
    response = client.get(url)
    assert response.status_code == 200, response.content.decode()[:2000]
    return int(re.search(r'id="grid"[^>]*?data-total="(\d+)"', response.content.decode(), re.S).group(1))


def grid_ids(dataset, url: str) -> set[int]:
    params = {k: v[0] for k, v in parse_qs(urlsplit(html.unescape(url)).query).items()}
    flt = face_filter(dataset=dataset, params=params)
    assert not flt.errors, flt.errors
    return set(flt.matching.values_list("pk", flat=True))


def svg_links(body: str, prefix: str) -> dict[str, str]:
    return {gid: html.unescape(url) for gid, url in LINK.findall(body) if gid.startswith(prefix)}


def test_each_confusion_cell_opens_its_faces(alice_client, dataset, version):
    body = alice_client.get(f"/training/versions/{version.pk}/").content.decode()
    cells = svg_links(body, "cell-")
    matrix = version.metrics["confusion_matrix"]
    assert set(cells) == {f"cell-{i}-{j}" for i in range(2) for j in range(2) if matrix[i][j]}
    assert matrix[0][1] + matrix[1][0] > 0  # there are errors to open
    test = {e.face_id: e.label for e in training_data_collect(dataset=dataset, seed=0).of_split("test")}
    predicted = dict(Prediction.objects.filter(model_version=version).values_list("face_id", "predicted_label"))
    for i, true in enumerate(version.classes):
        for j, pred in enumerate(version.classes):
            if not matrix[i][j]:
                continue
            url = cells[f"cell-{i}-{j}"]
            assert grid_count(alice_client, url) == matrix[i][j]
            expected = {f for f, label in test.items() if label == true and predicted[f] == pred}
            assert grid_ids(dataset, url) == expected


def test_cells_keep_counting_what_the_version_saw_after_a_relabel(alice, alice_client, dataset, version):
    """The figures are frozen at evaluation; the links read the version's snapshot, so a relabel
    does not make the grid disagree with the matrix (the tile shows the new label)."""
    body = alice_client.get(f"/training/versions/{version.pk}/").content.decode()
    url = svg_links(body, "cell-")["cell-0-1"]
    face_id = sorted(grid_ids(dataset, url))[0]
    labeling_services.faces_update(user=alice, dataset=dataset, faces=[face_id], changes={"label": "male"})
    Face.objects.filter(pk=face_id).update(split="train")
    assert grid_count(alice_client, url) == version.metrics["confusion_matrix"][0][1]
    assert f'data-id="{face_id}"' in alice_client.get(url).content.decode()


def test_each_slice_bar_and_its_errors_open_their_faces(alice_client, dataset, version):
    response = alice_client.get(f"/training/versions/{version.pk}/")
    body = response.content.decode()
    bars = svg_links(body, "slice-")
    slices = version.metrics["slices"]
    assert {"age_band", "race", "quality"} <= set(slices)
    assert len(bars) == sum(len(rows) for rows in slices.values())
    for kind, rows in response.context["slices"].items():
        for row in rows:
            assert grid_count(alice_client, bars[f"slice-{kind}-{row['value']}"]) == row["n"]
            assert html.escape(row["url"]) in body
            assert (
                grid_count(alice_client, row["errors_url"])
                == row["errors"]
                == row["n"] - round(row["accuracy"] * row["n"])
            )


def test_each_calibration_bin_opens_its_faces(alice_client, dataset, version):
    body = alice_client.get(f"/training/versions/{version.pk}/").content.decode()
    bins = svg_links(body, "bin-")
    calibration = version.metrics["calibration"]
    assert len(calibration) >= 3 and len(bins) == len(calibration)
    for b in calibration:
        assert grid_count(alice_client, bins[f"bin-{b['low']}-{b['high']}"]) == b["n"]
    assert sum(b["n"] for b in calibration) == version.metrics["n_test"]


def test_false_positives_negatives_errors_and_disputed_links(alice_client, dataset, version):
    response = alice_client.get(f"/training/versions/{version.pk}/")
    body = response.content.decode()
    matrix = version.metrics["confusion_matrix"]
    for i, row in enumerate(response.context["per_class"]):
        assert row["false_negatives"] == sum(matrix[i]) - matrix[i][i]
        assert row["false_positives"] == sum(r[i] for r in matrix) - matrix[i][i]
        assert grid_count(alice_client, row["fn_url"]) == row["false_negatives"]
        assert grid_count(alice_client, row["fp_url"]) == row["false_positives"]
        assert grid_count(alice_client, row["support_url"]) == row["support"]
    drill = response.context["drill"]
    assert grid_count(alice_client, drill["test_url"]) == version.metrics["n_test"]
    assert grid_count(alice_client, drill["errors_url"]) == drill["errors"] == matrix[0][1] + matrix[1][0]
    assert grid_count(alice_client, drill["disputed_url"]) == drill["disputed"] > 0
    assert f'href="/review/{dataset.pk}/versions/{version.pk}/"' in body


def test_the_grid_says_the_active_filter_in_words(alice_client, dataset, version):
    url = f"/labeling/{dataset.pk}/?model={version.pk}&model_split=test&model_label=female&predicted=male"
    body = alice_client.get(url).content.decode()
    words = re.search(r'id="filter-words">(.*?)</p>', body, re.S).group(1)
    assert "in v1&#x27;s test split" in words and "labelled female when v1 was trained" in words
    assert "predicted male by v1" in words
    # The snapshot filters have no input in the form: carried as hidden inputs, so filtering again keeps them.
    assert '<input type="hidden" form="filters" name="model_label" value="female">' in body
    body = alice_client.get(f"/labeling/{dataset.pk}/?min_size=52&sharpness_above=50&max_sharpness=100").content
    words = re.search(r'id="filter-words">(.*?)</p>', body.decode(), re.S).group(1)
    assert "size at least 52 px" in words and "sharpness above 50" in words and "sharpness at most 100" in words


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("model_split=holdout", "Unknown split “holdout”: use train, val or test."),
        ("model_label=cat", "Unknown label “cat”: version 1 knows female, male."),
        ("model_slice=quality", "“quality” is not a slice: use &lt;kind&gt;:&lt;value&gt;, e.g. quality:blurry."),
        ("model_correct=maybe", "“maybe” is not valid for model_correct: use 1 or 0."),
        ("excluded=2", "“2” is not valid for excluded: use 1 or 0."),
        ("conf_above=x", "“x” is not a number (conf_above)."),
        ("differs_from=9999", "Model version 9999 is not a model of this dataset."),
    ],
)
def test_bad_drilldown_parameters_are_explained(alice_client, dataset, version, query, message):
    response = alice_client.get(f"/labeling/{dataset.pk}/?model={version.pk}&{query}")
    assert response.status_code == 400
    assert message in response.content.decode()


def test_a_version_without_snapshot_says_so(alice_client, dataset, version):
    ModelVersion.objects.filter(pk=version.pk).update(snapshot="")
    response = alice_client.get(f"/labeling/{dataset.pk}/?model={version.pk}&model_split=test")
    assert response.status_code == 400
    assert "Version 1 has no snapshot of the faces it was trained and tested on" in response.content.decode()
    page = alice_client.get(f"/training/versions/{version.pk}/").content.decode()
    assert "This version has no snapshot" in page and "cell-0-0" not in page


def test_each_histogram_bar_opens_its_faces(alice_client, dataset, faces):
    Face.objects.filter(pk__in=[f.pk for f in faces[:15]]).update(is_excluded=True)
    body = alice_client.get(f"/labeling/{dataset.pk}/curate/").content.decode()
    bars = svg_links(body, "bar-")
    counts = {h["metric"]: h for h in quality_histogram_counts(dataset=dataset)}
    seen = 0
    for gid, url in bars.items():
        metric, state, i = re.fullmatch(r"bar-(\w+?)-(included|excluded)-(\d+)", gid).groups()
        expected = counts[metric][state][int(i)]
        assert grid_count(alice_client, url) == expected > 0
        seen += expected
    # Every face with a value is in exactly one bar of each metric (neighbours share no face).
    assert seen == 4 * len(faces)
    assert {m: sum(h["included"]) + sum(h["excluded"]) for m, h in counts.items()} == dict.fromkeys(counts, 120)


def test_histogram_edges_are_round_and_cover_the_values():
    assert histogram_edges(40, 199, integer=True)[:3] == [40, 50, 60]
    assert histogram_edges(3, 17, integer=True)[:3] == [3, 4, 5]  # never narrower than 1 px
    edges = histogram_edges(3.2, 1450.0)
    assert edges[0] == 0 and edges[1] == 50 and edges[-1] >= 1450 and len(edges) <= 32
    edges = histogram_edges(-29.0, 29.0)
    assert edges[0] <= -29 and edges[-1] >= 29 and all(e == round(e, 10) for e in edges)
    assert histogram_edges(0.3, 0.3) == [0.3, 0.3]


def test_each_curation_count_opens_its_faces(alice, alice_client, dataset, faces):
    labeling_services.splits_assign(user=alice, dataset=dataset, seed=0)
    Face.objects.filter(pk__in=[f.pk for f in faces[:10]]).update(is_excluded=True)
    Face.objects.filter(pk__in=[f.pk for f in faces[10:14]]).update(is_unsure=True)
    Face.objects.filter(pk__in=[f.pk for f in faces[14:20]]).update(label="")
    response = alice_client.get(f"/labeling/{dataset.pk}/curate/")
    body = response.content.decode()
    ov = response.context["ov"]
    checked = 0
    for _label, cells, total, query in ov["linked_rows"]:
        assert grid_count(alice_client, f"/labeling/{dataset.pk}/?{query}") == total
        for n, cell_query in cells:
            assert grid_count(alice_client, f"/labeling/{dataset.pk}/?{cell_query}") == n
            checked += n > 0
            if n:
                assert f'href="/labeling/{dataset.pk}/?{html.escape(cell_query)}">{n}</a>' in body
    assert checked >= 6
    for n, query in ov["linked_totals"]:
        assert grid_count(alice_client, f"/labeling/{dataset.pk}/?{query}") == n
    assert grid_count(alice_client, f"/labeling/{dataset.pk}/?{ov['total_query']}") == ov["total"] == 110
    assert grid_count(alice_client, f"/labeling/{dataset.pk}/?label=excluded") == ov["excluded"] == 10
    assert grid_count(alice_client, f"/labeling/{dataset.pk}/?label=unsure") == ov["unsure"] == 4
    assert 'id="unsure-count"' in body and 'id="excluded-count"' in body


def test_compare_rows_are_rounded_and_their_counts_link_to_the_grid(alice_client, dataset, version):
    other = build_version(dataset, number=2, flip=3)
    response = alice_client.get(f"/training/datasets/{dataset.pk}/compare/?a={version.pk}&b={other.pk}")
    body = response.content.decode()
    rows = {r["name"]: r for r in response.context["comparison"]["metric_rows"]}
    accuracy = rows["Test accuracy"]
    assert f"<td>{accuracy['a']:.3f}</td>" in body and repr(accuracy["b"]) not in body
    for name in ("Test faces", "Test errors", "Disputed faces (prediction differs from the current label)"):
        row = rows[name]
        assert grid_count(alice_client, row["a_url"]) == row["a"]
        assert grid_count(alice_client, row["b_url"]) == row["b"]
        assert f'href="{html.escape(row["a_url"])}">{row["a"]}</a>' in body
    assert rows["Test errors"]["b"] > rows["Test errors"]["a"]
    differ = response.context["comparison"]["differ"]
    assert differ > 0 and grid_count(alice_client, response.context["differ_url"]) == differ
    words = alice_client.get(response.context["differ_url"]).content.decode()
    assert "v1 and v2 predict differently" in words


def test_the_bias_gap_never_pairs_a_slice_with_itself():
    rows = [
        {"value": "blurry", "n": 29, "accuracy": 0.758621},
        {"value": "sharp", "n": 58, "accuracy": 0.758621},
    ]
    gap = bias_summary({"quality": rows})["quality"]
    assert (gap["worst"]["value"], gap["best"]["value"], gap["gap"]) == ("blurry", "sharp", 0.0)
    # A version stored before the fix is repaired when shown.
    stored = {
        "slices": {"quality": rows},
        "bias": {"quality": {"label": "Quality band", "gap": 0.0, "worst": rows[0], "best": rows[0]}},
    }
    assert with_intervals(stored)["bias"]["quality"]["best"]["value"] == "sharp"


def test_the_retrain_message_names_the_job_as_the_new_thing(alice_client, dataset, version):
    response = alice_client.post(f"/review/{dataset.pk}/versions/{version.pk}/retrain", follow=True)
    job = version.retrain_jobs.get()
    assert f"Retraining from v1&#x27;s settings as training job {job.pk}." in response.content.decode()
