"""Faces for labeling tests: real UTKFace crops from tests/fixtures copied into the test's
storage, with rows shaped as alignment writes them (box, 68 landmarks, quality, phash)."""

from __future__ import annotations

import shutil
from pathlib import Path

from django.conf import settings

from curator.models import Dataset, Face, ImportBatch
from curator.services.imports import source_image_add

UTK = Path(__file__).resolve().parent.parent / "fixtures" / "faces" / "utkface"


def utk_files() -> list[Path]:
    return sorted(UTK.glob("*.jpg"))


def utk_metadata(name: str) -> dict:
    age, gender, race = name.split("_")[:3]
    return {"age": int(age), "gender": int(gender), "race": int(race)}


def landmarks_for(size: int) -> list[list[int]]:
    """68 plausible points inside a square crop (only drawing and storage use them here)."""
    return [[int(size * (0.2 + 0.6 * (i % 17) / 16)), int(size * (0.25 + 0.5 * (i // 17) / 4))] for i in range(68)]


def make_faces(
    dataset: Dataset,
    n: int,
    *,
    labels: list[str] | None = None,
    batch: ImportBatch | None = None,
    start: int = 0,
    phashes: list[int | None] | None = None,
    metadata: list[dict] | None = None,
    per_image: int = 1,
) -> list[Face]:
    """n faces (per_image faces per photo), cycling through the fixture crops and `labels`."""
    files = utk_files()
    media = Path(settings.MEDIA_ROOT)
    if batch is None:
        batch = ImportBatch.objects.create(dataset=dataset, source="upload", source_name="fixtures", status="done")
    faces: list[Face] = []
    image = None
    for i in range(start, start + n):
        src = files[i % len(files)]
        if image is None or (i - start) % per_image == 0:
            meta = metadata[i - start] if metadata else {**utk_metadata(src.name), "identity": f"person-{i}"}
            image, _written = source_image_add(
                dataset=dataset,
                data=src.read_bytes(),
                original_name=f"photos/{i:04d}-{src.name}",
                sha256=f"{dataset.pk:08d}{i:056d}",
                batch=batch,
                status="aligned",
                face_count=per_image,
                metadata=meta,
            )
        crop = f"datasets/{dataset.pk}/faces/{i}.jpg"
        (media / crop).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, media / crop)
        label = labels[(i - start) % len(labels)] if labels else ""
        faces.append(
            Face(
                dataset=dataset,
                image=image,
                index=(i - start) % per_image,
                box_left=20,
                box_top=20,
                box_right=180,
                box_bottom=180,
                landmarks=landmarks_for(200),
                crop=crop,
                size_px=40 + (i * 7) % 160,
                sharpness=float(10 + (i * 13) % 300),
                yaw=float((i * 11) % 60 - 30),
                roll=float((i * 3) % 20 - 10),
                detector_score=round(0.2 + (i % 10) / 10, 2),
                phash=phashes[i - start]
                if phashes
                else (0x0123456789ABCDEF ^ (i * 0x9E3779B97F4A7C15 & 0xFFFFFFFFFFFF)),
                label=label,
                label_origin="import" if label else "",
            )
        )
    return Face.objects.bulk_create(faces)


def version_with_predictions(
    dataset: Dataset,
    faces: list[Face],
    *,
    number: int = 1,
    architecture: str = "pretrained",
    predict=None,
    classes: list[str] | None = None,
):
    """A model version with a prediction for every face, as a `pretrained` version (or any
    other) leaves them, without training: `predict(i, face)` -> (label, confidence); by default
    female/male alternating with confidences falling from 0.99 by 0.03."""
    from training.models import ModelVersion, Prediction

    version = ModelVersion.objects.create(
        dataset=dataset, number=number, architecture=architecture, artifact="", classes=classes or ["female", "male"]
    )
    rows = []
    for i, face in enumerate(faces):
        label, confidence = predict(i, face) if predict else ("male" if i % 2 else "female", round(0.99 - 0.03 * i, 2))
        probabilities = [(1 - confidence) / max(1, len(version.classes) - 1)] * len(version.classes)
        probabilities[version.classes.index(label)] = confidence
        rows.append(
            Prediction(
                face=face,
                model_version=version,
                probabilities=probabilities,
                predicted_label=label,
                confidence=confidence,
                disagrees=bool(face.label) and face.label != label,
            )
        )
    Prediction.objects.bulk_create(rows)
    return version
