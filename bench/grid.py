"""Grid page and bulk relabel speed on 100,000 faces in PostgreSQL.

    .venv/bin/python bench/grid.py [--faces 100000] [--repeat 7] [--reset]

Fills DATABASE_URL (default postgres://postgres@127.0.0.1:5432/curator_bench, created when
missing) with one dataset of synthetic Face rows pointing at real thumbnail files (the UTKFace
fixture crops copied into a bench media folder), one active model version with a prediction per
face, then measures the server time of the grid page (Django test Client: view, queries and
template) for several filter combinations, and a bulk relabel of 10,000 faces through
`labeling.services.faces_update`. Goals: grid p50 < 150 ms, bulk relabel < 2 s.
The last line is JSON: {"grid_p50_ms": .., "grid_p95_ms": .., "bulk_relabel_10k_s": ..}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from support import bench_django_setup, bench_environment  # noqa: E402 (bench/, beside this script)

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/curator_bench"
bench_environment(DEFAULT_URL)

CLASSES = ["female", "male"]
FILTERS = [
    ("all faces", {}),
    ("label=female", {"label": "female"}),
    ("unlabelled, sharpest first", {"label": "unlabelled", "sort": "-sharpness"}),
    ("size>=100 & |yaw|<=20", {"min_size": "100", "max_abs_yaw": "20"}),
    ("split=train sorted by size", {"split": "train", "sort": "-size"}),
    ("age 20-40 & race 1", {"m_age_min": "20", "m_age_max": "40", "m_race": "1"}),
    ("model disagrees, most confident", {"disagrees": "1", "sort": "-confidence"}),
    ("file name contains 123", {"file": "123"}),
    ("page 400", {"page": "400"}),
    ("excluded", {"label": "excluded"}),
]


def fill(n: int, reset: bool):
    from django.contrib.auth.models import Group, User

    from curator.models import Dataset, Face, ImportBatch, Membership, SourceImage
    from training.models import ModelVersion, Prediction

    user, _ = User.objects.get_or_create(username="bench-alice", defaults={"is_staff": False})
    group, _ = Group.objects.get_or_create(name="curators")
    user.groups.add(group)
    dataset = Dataset.objects.filter(name="bench-grid").first()
    if dataset is not None and (reset or Face.objects.filter(dataset=dataset).count() != n):
        print("dropping the previous bench dataset")
        dataset.delete()
        dataset = None
    if dataset is not None:
        print(f"reusing dataset {dataset.pk} with {n} faces")
        return dataset, user
    dataset = Dataset.objects.create(name="bench-grid", classes=CLASSES, created_by=user)
    Membership.objects.create(dataset=dataset, user=user, role="curator")
    media = Path(os.environ["MEDIA_ROOT"])
    crops = sorted((ROOT / "tests" / "fixtures" / "faces" / "utkface").glob("*.jpg"))
    paths = []
    for i, src in enumerate(crops):
        rel = f"datasets/{dataset.pk}/faces/{i}.jpg"
        (media / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, media / rel)
        paths.append((rel, src.name))
    batches = [
        ImportBatch.objects.create(dataset=dataset, source="zip", source_name=f"part-{b}.zip", status="done")
        for b in range(4)
    ]
    t0 = time.perf_counter()
    chunk = 5000
    splits = ["train"] * 14 + ["val"] * 3 + ["test"] * 2 + [""]
    for start in range(0, n, chunk):
        images = []
        for i in range(start, min(n, start + chunk)):
            rel, name = paths[i % len(paths)]
            age, gender, race = (int(x) for x in name.split("_")[:3])
            images.append(
                SourceImage(
                    dataset=dataset,
                    batch=batches[i % 4],
                    file=rel,
                    original_name=f"import/{i // 1000:03d}/{i:06d}_{name}",
                    sha256=f"{i:064x}",
                    width=200,
                    height=200,
                    status="aligned",
                    face_count=1 if i % 10 else 2,
                    metadata={
                        "age": (age + i) % 90,
                        "gender": gender,
                        "race": (race + i) % 5,
                        "identity": f"p{i // 3}",
                    },
                )
            )
        images = SourceImage.objects.bulk_create(images)
        faces = []
        for img in images:
            i = int(img.sha256, 16)
            rel, _ = paths[i % len(paths)]
            faces.append(
                Face(
                    dataset=dataset,
                    image=img,
                    index=0,
                    box_left=20,
                    box_top=20,
                    box_right=180,
                    box_bottom=180,
                    crop=rel,
                    size_px=40 + (i * 7) % 300,
                    sharpness=float((i * 37) % 900),
                    yaw=float((i * 11) % 80 - 40),
                    roll=float((i * 3) % 30 - 15),
                    detector_score=((i * 13) % 100) / 50,
                    phash=(i * 0x9E3779B97F4A7C15) & 0x7FFFFFFFFFFFFFFF,
                    label=["female", "male", ""][i % 3],
                    label_origin="import" if i % 3 != 2 else "",
                    is_excluded=i % 50 == 0,
                    split=splits[i % len(splits)],
                )
            )
        Face.objects.bulk_create(faces)
        print(f"  {min(n, start + chunk)} faces", end="\r", flush=True)
    mv = ModelVersion.objects.create(
        dataset=dataset, number=1, architecture="cnn", artifact="-", classes=CLASSES, is_active=True
    )
    rows = Face.objects.filter(dataset=dataset).values_list("id", "label")
    preds = []
    for fid, label in rows.iterator(chunk_size=10000):
        p = ((fid * 2654435761) % 1000) / 1000
        predicted = "female" if p < 0.5 else "male"
        preds.append(
            Prediction(
                face_id=fid,
                model_version=mv,
                probabilities=[1 - p, p],
                predicted_label=predicted,
                confidence=max(p, 1 - p),
                disagrees=bool(label) and label != predicted,
            )
        )
    Prediction.objects.bulk_create(preds, batch_size=5000)
    vacuum()
    print(f"\nfilled {n} faces (+images, predictions) in {time.perf_counter() - t0:.1f}s")
    return dataset, user


def evaluated_version(dataset):
    """fill()'s version 1 with a snapshot and an evaluation, as a trained version has (made once).
    fill()'s synthetic predictions call p = 0.5 "male" while argmax([0.5, 0.5]) is female; the real
    pipeline stores the argmax, so the rows are made to agree with their probabilities first."""
    from training.data import snapshot_write, training_data_collect
    from training.models import ModelVersion, Prediction
    from training.services import model_version_evaluate

    version = ModelVersion.objects.get(dataset=dataset, number=1)
    Prediction.objects.filter(model_version=version, confidence=0.5).exclude(predicted_label="female").update(
        predicted_label="female"
    )
    if not version.snapshot:
        t = time.perf_counter()
        data = training_data_collect(dataset=dataset, seed=0)
        version.snapshot = snapshot_write(data=data, path=f"datasets/{dataset.pk}/models/v1-snapshot.csv")
        version.metrics = model_version_evaluate(model_version=version, data=data)
        version.save(update_fields=["snapshot", "metrics"])
        print(f"snapshot and evaluation of {len(data.examples)} faces in {time.perf_counter() - t:.1f}s")
    return version


def vacuum() -> None:
    """What autovacuum does in a live database soon after a big load: statistics for the planner
    and a visibility map so counts can be index-only scans."""
    from django.db import connection

    with connection.cursor() as cur:
        for table in ("curator_face", "curator_sourceimage", "training_prediction", "labeling_labelevent"):
            cur.execute(f"VACUUM ANALYZE {table}")


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7, help="timed requests per filter (after one warm-up)")
    parser.add_argument("--reset", action="store_true", help="rebuild the bench dataset")
    args = parser.parse_args()

    bench_django_setup()
    from django.http import QueryDict
    from django.test import Client

    from curator.models import Face
    from labeling import filters, services

    dataset, user = fill(args.faces, args.reset)

    client = Client()
    client.force_login(user)
    url = f"/labeling/{dataset.pk}/"
    grid_times: list[float] = []
    print(f"\ngrid page, {args.repeat} timed requests per filter (ms):")
    for name, params in FILTERS:
        response = client.get(url, params)  # warm-up
        if response.status_code != 200:
            raise SystemExit(f"{name}: HTTP {response.status_code}")
        shown = filters.face_filter(dataset=dataset, params=QueryDict(urlencode(params))).queryset.count()
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            client.get(url, params)
            times.append((time.perf_counter() - t) * 1000)
        grid_times += times
        print(f"  {name:34s} p50 {statistics.median(times):7.1f}  max {max(times):7.1f}  ({shown} faces match)")

    print("\nbulk relabel of 10,000 faces (faces_update):")
    ids = list(Face.objects.filter(dataset=dataset).order_by("id").values_list("id", flat=True)[:10_000])
    bulk_times = []
    # Start from the label the first face does not have, so every run changes all 10,000 faces.
    start = 1 if Face.objects.get(pk=ids[0]).label == CLASSES[0] else 0
    Face.objects.filter(pk__in=ids).update(label=CLASSES[1 - start])
    for run in range(5):
        label = CLASSES[(start + run) % 2]
        t = time.perf_counter()
        action = services.faces_update(user=user, dataset=dataset, faces=ids, changes={"label": label})
        bulk_times.append(time.perf_counter() - t)
        print(f"  run {run + 1}: {bulk_times[-1]:.2f}s, {action.face_count} faces changed")
    t = time.perf_counter()
    action = services.faces_update(
        user=user,
        dataset=dataset,
        faces=Face.objects.filter(dataset=dataset, pk__in=ids),
        changes={"split": "test", "is_unsure": True},
    )
    print(f"  two fields at once by queryset: {time.perf_counter() - t:.2f}s ({action.face_count} faces)")
    t = time.perf_counter()
    result = services.bulk_action_revert(user=user, action=action)
    print(f"  revert of that action: {time.perf_counter() - t:.2f}s ({result.reverted} faces)")

    figures = {
        "grid_p50_ms": round(statistics.median(grid_times), 1),
        "grid_p95_ms": round(percentile(grid_times, 0.95), 1),
        "bulk_relabel_10k_s": round(statistics.median(bulk_times), 2),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
