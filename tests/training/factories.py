"""Face rows made from the fixture faces, as alignment would leave them: each photo stored as an
aligned-size crop (160 px) with its label, metadata and a quality figure."""

import hashlib
import io
from pathlib import Path

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image

from curator.models import Dataset, Face, SourceImage

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
    faces = []
    for i, row in enumerate(rows):
        data = row["path"].read_bytes()
        image = SourceImage.objects.create(
            dataset=dataset,
            file=f"datasets/{dataset.pk}/originals/{row['path'].name}",
            original_name=row["path"].name,
            sha256=hashlib.sha256(data + str(i).encode()).hexdigest(),
            label=row["label"],
            metadata=row["metadata"],
            status=SourceImage.Status.ALIGNED,
            face_count=1,
        )
        with Image.open(io.BytesIO(data)) as im:
            buffer = io.BytesIO()
            im.convert("RGB").resize((crop_size, crop_size)).save(buffer, "JPEG", quality=92)
        crop = default_storage.save(f"datasets/{dataset.pk}/faces/{image.pk}-0.jpg", ContentFile(buffer.getvalue()))
        faces.append(
            Face.objects.create(
                dataset=dataset,
                image=image,
                crop=crop,
                label=row["label"],
                label_origin=Face.LabelOrigin.IMPORT,
                is_largest=True,
                size_px=crop_size,
                sharpness=100.0 + i,
            )
        )
    return faces
