"""Papercuts of issue 20 (item 10), one test each: the import report's wording, every label
source it used and an alignment bar of its own; the demo prompt off a terminal; Ctrl-C on
`make run` stops the web server too; an annotator's 403 is a page of the site; deleting a
dataset while its map is computed logs no traceback."""

import io
import logging
import re
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command

from curator.models import Dataset, ImportBatch
from embeddings import maps, uniqueness
from embeddings.models import DatasetMap
from tests.curator.test_import import lfw, make_zip, upload
from tests.embeddings.factories import descriptors_store
from tests.labeling.factories import make_faces

ROOT = Path(__file__).resolve().parents[2]


def test_the_import_report_names_the_upload_and_every_label_source(alice_client, dataset, fixture_faces):
    a, b = lfw(fixture_faces, "female", 2)
    c = lfw(fixture_faces, "male", 1)[0]
    csv_text = f"path,label\n{a.name},female\n"
    members = {a.name: a.read_bytes(), f"female/{b.name}": b.read_bytes(), f"male/{c.name}": c.read_bytes()}
    members["labels.csv"] = csv_text.encode()
    upload(alice_client, dataset, {"set.zip": make_zip(members)})
    batch = ImportBatch.objects.get()
    assert batch.label_sources == {"csv": 1, "folders": 2}
    body = alice_client.get(f"/datasets/{dataset.pk}/imports/{batch.pk}/").content.decode()
    assert "labels.csv (1)" in body and "Folder per class (2)" in body  # labels.csv was left out
    # The alignment has a bar of its own: the files bar being full says nothing about alignment.
    assert re.search(r'<progress class="align-progress" id="align-progress-\d+" max="3"', body)


def test_an_upload_is_named_in_words(alice_client, dataset, fixture_faces):
    a = lfw(fixture_faces, "female", 1)[0]
    upload(alice_client, dataset, {a.name: a.read_bytes()})
    batch = ImportBatch.objects.get()
    body = alice_client.get(f"/datasets/{dataset.pk}/imports/{batch.pk}/").content.decode()
    assert f"Upload of {batch.source_name}" in body


def test_the_demo_offer_off_a_terminal_says_how_to_load_it(db, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    out = io.StringIO()
    call_command("load_demo", "--if-empty", "--ask", stdout=out)
    assert "manage.py load_demo" in out.getvalue() and not Dataset.objects.exists()
    readme = (ROOT / "README.md").read_text()
    assert "when its input is not a terminal" in readme and "manage.py load_demo" in readme


def test_make_run_stops_the_web_server_with_the_workers():
    recipe = (ROOT / "Makefile").read_text().split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert "runserver 127.0.0.1:8000 --noreload & web=$$!" in recipe
    trap = next(line for line in recipe.splitlines() if "trap " in line)
    assert "$$web" in trap and "INT" in trap and recipe.rstrip().endswith("wait $$web")


def test_the_readme_predict_example_names_no_version_a_new_user_lacks():
    readme = (ROOT / "README.md").read_text()
    assert "model_version=3" not in readme and "-F dataset=1" in readme


def test_an_annotator_gets_the_sites_403_page(bob_client, dataset):
    response = bob_client.get(f"/datasets/{dataset.pk}/import/")
    assert response.status_code == 403
    body = response.content.decode()
    assert 'id="forbidden"' in body and "Not allowed" in body and "topbar" in body


def test_deleting_a_dataset_while_its_map_is_computed_logs_no_traceback(transactional_db, dataset, monkeypatch, caplog):
    # transactional: the foreign keys are checked when the task commits, as in the worker
    faces = make_faces(dataset, 6)
    descriptors_store(faces)
    row = DatasetMap.objects.create(dataset=dataset, target_stamp=maps.current_stamp(dataset.pk))
    real_scores = uniqueness.uniqueness_scores

    def scores_then_delete(vectors):  # the curator deletes the dataset while the task runs
        out = real_scores(vectors)
        Dataset.objects.filter(pk=dataset.pk).delete()
        return out

    monkeypatch.setattr(uniqueness, "uniqueness_scores", scores_then_delete)
    monkeypatch.setattr(maps.projection, "projection_compute", lambda v: np.zeros((len(v), 2), dtype=np.float32))
    with caplog.at_level(logging.INFO):
        maps.map_compute(map_id=row.pk)  # no exception
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert "deleted while its map was computed" in caplog.text


@pytest.mark.parametrize("name", ["403.html"])
def test_error_pages_extend_the_site(name):
    assert (ROOT / "templates" / name).read_text().startswith('{% extends "base.html" %}')
