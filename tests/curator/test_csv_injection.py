"""CSV files people open in a spreadsheet (the export's manifest.csv, a version's snapshot) never
carry a cell that runs as a formula: a text cell starting with = + - @, a tab or a carriage
return gets a leading ' (OWASP); numbers stay numbers, and the snapshot reads back unchanged."""

import csv
import io
import zipfile

from django.core.files.storage import default_storage

from curator.models import SourceImage
from curator.spreadsheet import csv_cell, csv_cell_read
from labeling import services
from tests.labeling.factories import make_faces
from training.data import Example, TrainingData, snapshot_read, snapshot_write

HOSTILE = ['=HYPERLINK("http://evil","x")', "@SUM(1+1)*cmd|' /C calc'!A0", "+cmd", "-2+3", "\tTAB", "\rCR"]


def test_formula_cells_get_a_quote_numbers_and_plain_text_do_not():
    for value in HOSTILE:
        assert csv_cell(value) == "'" + value
        assert csv_cell_read(csv_cell(value)) == value
    for value in ["alice", "-3.5", "+1", "1e-3", "", "a=b", 12, -4.5, None]:
        assert csv_cell(value) == value
    assert csv_cell("'quoted") == "''quoted" and csv_cell_read("''quoted") == "'quoted"


def test_the_export_manifest_neutralises_values_and_names_from_labels_csv(alice, dataset):
    faces = make_faces(dataset, 2, labels=["female", "male"], metadata=[{"note": HOSTILE[0]}, {"=key": HOSTILE[1]}])
    SourceImage.objects.filter(pk=faces[0].image_id).update(original_name="+cmd.jpg")
    path = services.export_create(user=alice, dataset=dataset)
    with default_storage.open(path, "rb") as fh, zipfile.ZipFile(io.BytesIO(fh.read())) as zf:
        text = zf.read("manifest.csv").decode()
    rows = list(csv.reader(io.StringIO(text)))
    cells = [cell for row in rows for cell in row]
    assert not [c for c in cells if c.startswith(("=", "+", "@", "\t", "\r"))], cells
    assert "'" + HOSTILE[0] in cells and "'" + HOSTILE[1] in cells and "'+cmd.jpg" in cells
    assert "'meta_=key" not in cells and "meta_=key" in rows[0]  # the header starts with meta_, harmless
    yaw = rows[0].index("yaw")
    assert all(row[yaw] == "" or float(row[yaw]) == float(row[yaw]) for row in rows[1:])  # numbers stay numbers


def test_the_snapshot_is_neutralised_and_reads_back_what_was_written(dataset):
    examples = [
        Example(face_id=1, crop="datasets/1/faces/a.jpg", label="=female", split="train", split_assigned=True),
        Example(face_id=2, crop="datasets/1/faces/b.jpg", label="'male", split="test", split_assigned=False),
    ]
    path = snapshot_write(data=TrainingData(classes=["=female", "'male"], examples=examples), path="x/snap.csv")
    with default_storage.open(path, "rb") as fh:
        raw = fh.read().decode()
    assert "\n1,datasets/1/faces/a.jpg,'=female," in raw.replace("\r\n", "\n")
    rows = snapshot_read(path)
    assert [r["label"] for r in rows] == ["=female", "'male"]
