"""Face rows made from the fixture faces, as alignment leaves them: each photo stored as an
original, its largest face aligned by the real pipeline (160-px crop), with its label, metadata
and a quality figure."""

import hashlib
from pathlib import Path

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from curator.faces.pipeline import AlignOptions, detect_and_align, encode_jpeg
from curator.images import decode
from curator.models import Dataset, Face, SourceImage
from curator.services.imports import source_image_add

UTK_RACES = {"0": "white", "1": "black", "2": "asian", "3": "indian", "4": "others"}


def fixture_face_rows(fixture_faces: Path) -> list[dict]:
    """(path, label, metadata) of every fixture face, UTKFace labels read from the file names."""
    rows = []
    for path in sorted((fixture_faces / "utkface").glob("*.jpg")):
        age, gender, race = path.name.split("_")[:3]
        rows.append(
            {
                "path": path,
                "label": "male" if gender == "0" else "female",
                "metadata": {"age": int(age), "race": UTK_RACES.get(race, race), "source": "UTKFace"},
            }
        )
    for gender in ("female", "male"):
        for path in sorted((fixture_faces / "lfw" / gender).glob("*.jpg")):
            rows.append({"path": path, "label": gender, "metadata": {"source": "LFW"}})
    return rows


def add_faces(dataset: Dataset, rows: list[dict], crop_size: int = 160) -> list[Face]:
    """Each photo stored as an original and aligned by the real face pipeline (largest face; a
    crop-shaped photo without a detection becomes a whole-image face, as the dataset's imports do)."""
    faces = []
    options = AlignOptions.from_dataset(dataset, crop_size=crop_size)
    for i, row in enumerate(rows):
        data = row["path"].read_bytes()
        rgb, info = decode(data)
        aligned = detect_and_align(rgb, options)[0]
        image, _written = source_image_add(
            dataset=dataset,
            data=data,
            original_name=row["path"].name,
            info=info,
            sha256=hashlib.sha256(data + str(i).encode()).hexdigest(),
            label=row["label"],
            metadata=row["metadata"],
            status=SourceImage.Status.ALIGNED,
            face_count=1,
        )
        crop = default_storage.save(
            f"datasets/{dataset.pk}/faces/{image.pk}-0.jpg", ContentFile(encode_jpeg(aligned.crop))
        )
        left, top, right, bottom = aligned.box
        faces.append(
            Face.objects.create(
                dataset=dataset,
                image=image,
                crop=crop,
                box_left=left,
                box_top=top,
                box_right=right,
                box_bottom=bottom,
                landmarks=aligned.landmarks_list(),
                whole_image=aligned.whole_image,
                label=row["label"],
                label_origin=Face.LabelOrigin.IMPORT,
                is_largest=True,
                size_px=aligned.size_px,
                sharpness=100.0 + i,
            )
        )
    return faces
