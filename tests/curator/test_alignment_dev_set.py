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


def test_utkface_crops_keep_their_faces_with_the_face_check(dev_dataset):
    """Every UTKFace crop of a sample keeps one face in a dataset of crops (detected, found
    padded, or kept whole once the face check passes)."""
    paths = sorted((dev_dataset / "utkface_cropped").glob("*.jpg"))[::40]  # 100 crops
    options = AlignOptions(whole_image_fallback=True)
    counts = [len(detect_and_align(load_rgb(path), options)) for path in paths]
    assert counts.count(1) == len(paths), [p.name for p, c in zip(paths, counts, strict=True) if c != 1]


def test_upscaled_lfw_photos_keep_their_face_through_the_cheap_passes(dev_dataset, tmp_path):
    """LFW photos blown up to 3000x2000 JPEGs, decoded at a reduced scale: the centre face is
    found where the 250-px photo has it."""
    import cv2
    import numpy as np

    from curator.faces.pipeline import load_photo

    paths = sorted((dev_dataset / "lfw_wild").glob("*.jpg"))[::30]  # 10 photos
    for path in paths:
        small = detect_and_align(load_rgb(path), AlignOptions())
        big = cv2.copyMakeBorder(
            cv2.resize(load_rgb(path), (2000, 2000), interpolation=cv2.INTER_CUBIC), 0, 0, 500, 500, cv2.BORDER_REFLECT
        )
        target = tmp_path / "big.jpg"
        cv2.imwrite(str(target), cv2.cvtColor(big, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
        faces = detect_and_align(load_photo(target, AlignOptions()), AlignOptions())
        centre = np.array(small[0].box).reshape(2, 2).mean(axis=0) * 8 + (500, 0)
        assert any(
            np.linalg.norm(np.array(f.box).reshape(2, 2).mean(axis=0) - centre) < small[0].size_px * 8 * 0.2
            for f in faces
        ), path.name
