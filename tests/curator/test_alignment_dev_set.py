"""Alignment on a larger real sample: LFW news photos from the development set. Skips with a
message when the set (CURATOR_DEV_DATASET) is not on this machine."""

import csv

from curator.faces.pipeline import AlignOptions, detect_and_align
from curator.images import load_rgb


def test_lfw_photos_yield_the_labelled_centre_face_as_the_largest(dev_dataset):
    with open(dev_dataset / "labels.csv", newline="") as labels:
        rows = [r for r in csv.DictReader(labels) if r["source"] == "LFW"]
    sample = rows[::10]  # 30 photos, both genders
    found, centred = 0, 0
    for row in sample:
        rgb = load_rgb(dev_dataset / row["path"])
        faces = detect_and_align(rgb, AlignOptions())
        if not faces:
            continue
        found += 1
        largest = next(f for f in faces if f.is_largest)
        left, top, right, bottom = largest.box
        centre_x, centre_y = (left + right) / 2, (top + bottom) / 2
        # The label of an LFW photo belongs to the person at its centre.
        if abs(centre_x - rgb.shape[1] / 2) < 40 and abs(centre_y - rgb.shape[0] / 2) < 40:
            centred += 1
        assert largest.crop.shape == (160, 160, 3)
    assert found >= 0.95 * len(sample)
    assert centred >= 0.95 * found
