"""Streaming import (issue 12): end-to-end images per second from the start of an import of a folder
until every photo has an outcome (aligned, no face or error), against the alignment job alone on
the same, already imported photos; and how long an upload of 5,000 small files takes to return.

    .venv/bin/python bench/import_align.py [--repeats 3] [--utk 4000] [--large 20] [--uploads 5000]

1. A folder (var/bench/import-photos, hard links where possible): the 300 LFW photos and the first
   --utk UTKFace crops of ../shared/datasets/dev (CURATOR_DEV_DATASET), plus --large copies of LFW
   photos upscaled to 3000x2000 (as bench/align.py makes them), saved as camera-like JPEGs.
2. Its own PostgreSQL database (`curator_bench_import`, created and dropped here), media folder
   (var/bench/import-media) and Redis key prefix; real Celery workers started here: `-Q align -c 2`
   (the 2 align processes; CURATOR_ALIGN_WORKERS=2) and `-Q import -c 1`.
3. Each repeat: a fresh dataset; `import_folder_start` (what the import page does) queues the
   import on the `import` worker; the clock runs until the batch is done and no photo is pending
   (end to end). Then `alignment_job_start` on every photo of that dataset (what "align again"
   does, after deleting the faces found, so it is a first alignment again) and the clock runs
   until that job is done (alignment alone).
   overlap_ratio = end_to_end_img_per_s / align_only_img_per_s: 1.0 means the import is fully
   hidden behind alignment.
4. The workers are stopped; --uploads small distinct JPEGs (64x64, ~2.5 KB) are posted in ONE request
   to /datasets/<id>/import/ through Django's test client (building the multipart body included),
   after one warm-up upload of 10 files; the time until the response (a redirect to the import
   report) comes back.

Ends with one JSON line:
{"end_to_end_img_per_s", "align_only_img_per_s", "overlap_ratio", "upload_5000_return_s"} (medians)."""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

from postgres_admin import drop_database, recreate_database  # bench/, beside this script
from support import CeleryWorker, redis_cleanup

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCH_DIR = ROOT / "var" / "bench"
DB_URL = "postgres://postgres@127.0.0.1:5432/curator_bench_import"
PHOTOS = BENCH_DIR / "import-photos"
MEDIA = BENCH_DIR / "import-media"


def configure() -> None:
    """Environment of this process and of the workers; before django.setup()."""
    os.environ["DATABASE_URL"] = DB_URL
    os.environ["MEDIA_ROOT"] = str(MEDIA)
    os.environ["CURATOR_REDIS_PREFIX"] = f"curator-import-bench-{os.getpid()}:"
    os.environ["CURATOR_ALIGN_WORKERS"] = "2"
    os.environ["CURATOR_IMPORT_ROOTS"] = str(BENCH_DIR)
    os.environ["ALLOWED_HOSTS"] = "testserver,127.0.0.1,localhost"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "curator.settings")
    os.environ.setdefault("DEBUG", "1")
    os.environ["PYTHONUNBUFFERED"] = "1"


def build_folder(dev: Path, utk: int, large: int) -> int:
    import cv2

    from curator.images import load_rgb

    shutil.rmtree(PHOTOS, ignore_errors=True)
    lfw = sorted((dev / "lfw_wild").glob("*.jpg"))
    crops = sorted((dev / "utkface_cropped").glob("*.jpg"))[:utk]
    for folder, paths in (("lfw", lfw), ("utk", crops)):
        (PHOTOS / folder).mkdir(parents=True, exist_ok=True)
        for path in paths:
            try:
                os.link(path, PHOTOS / folder / path.name)
            except OSError:
                shutil.copyfile(path, PHOTOS / folder / path.name)
    (PHOTOS / "large").mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(lfw[:large]):
        big = cv2.resize(load_rgb(str(path)), (2000, 2000), interpolation=cv2.INTER_CUBIC)
        big = cv2.copyMakeBorder(big, 0, 0, 500, 500, cv2.BORDER_REFLECT)  # 3000 x 2000
        cv2.imwrite(
            str(PHOTOS / "large" / f"large-{i}.jpg"),
            cv2.cvtColor(big, cv2.COLOR_RGB2BGR),
            [cv2.IMWRITE_JPEG_QUALITY, 92],
        )
    return len(lfw) + len(crops) + large


def wait(condition, timeout: float, what: str, workers: list[CeleryWorker]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            logs = "\n".join(w.output()[-2000:] for w in workers)
            raise SystemExit(f"timed out waiting for {what}\n{logs}")
        time.sleep(0.1)


def end_to_end(user, run: int, workers: list[CeleryWorker]) -> tuple[float, object]:
    from curator.models import AlignmentJob, ImportBatch, SourceImage
    from curator.services import datasets, imports

    dataset = datasets.dataset_create(user=user, name=f"import bench {run}", classes=["female", "male"])
    started = time.perf_counter()
    batch = imports.import_folder_start(dataset=dataset, path=str(PHOTOS), user=user)

    def finished() -> bool:
        b = ImportBatch.objects.get(pk=batch.pk)
        if b.status == ImportBatch.Status.RECEIVING:
            return False
        if b.status == ImportBatch.Status.FAILED:
            raise SystemExit(f"the import failed: {b.error}")
        open_or_pending = AlignmentJob.objects.filter(batch=b).exclude(status__in=["done", "failed"]).exists()
        return not open_or_pending and not SourceImage.objects.filter(dataset=dataset, status="pending").exists()

    wait(finished, 1800, "the import and its alignment", workers)
    elapsed = time.perf_counter() - started
    batch.refresh_from_db()
    job = AlignmentJob.objects.get(batch=batch)
    import_s = (batch.finished_at - batch.started_at).total_seconds()
    rate = job.done / elapsed
    print(
        f"  end to end: {job.done} photos ({batch.imported_count} imported, {batch.skipped_count} skipped) in "
        f"{elapsed:.1f} s = {rate:.1f} img/s; the import itself took {import_s:.1f} s; "
        f"{job.faces} faces, {job.no_face} no face, {job.errors} errors",
        flush=True,
    )
    return rate, dataset


def align_only(dataset, workers: list[CeleryWorker]) -> float:
    from curator.models import AlignmentJob, Face
    from curator.services.alignment import alignment_job_start

    # Forget the faces the end-to-end run found, so this job does what a first alignment does
    # (a re-run would also match and replace old faces: more work, a flattering ratio).
    Face.objects.filter(dataset=dataset).delete()
    dataset.images.update(status="pending", face_count=0, alignment_job=None)
    started = time.perf_counter()
    job = alignment_job_start(dataset=dataset, images=dataset.images.all())
    wait(lambda: AlignmentJob.objects.get(pk=job.pk).is_finished, 1800, "the alignment job", workers)
    elapsed = time.perf_counter() - started
    job.refresh_from_db()
    rate = job.done / elapsed
    print(f"  align only: {job.done} photos in {elapsed:.1f} s = {rate:.1f} img/s", flush=True)
    return rate


def small_jpegs(count: int) -> list[tuple[str, bytes]]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    files = []
    for i in range(count):
        pixels = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "JPEG", quality=60)
        files.append((f"small-{i:05d}.jpg", buffer.getvalue()))
    return files


def upload_return_seconds(user, files: list[tuple[str, bytes]]) -> float:
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.test import Client

    from curator.models import ImportBatch
    from curator.services import datasets

    dataset = datasets.dataset_create(user=user, name=f"upload bench {time.time_ns()}", classes=["female", "male"])
    client = Client()
    client.force_login(user)
    payload = [SimpleUploadedFile(name, data, content_type="image/jpeg") for name, data in files]
    started = time.perf_counter()
    response = client.post(f"/datasets/{dataset.pk}/import/", {"files": payload})
    elapsed = time.perf_counter() - started
    if response.status_code != 302:
        raise SystemExit(f"the upload answered {response.status_code}: {response.content[:500]!r}")
    batch = ImportBatch.objects.get(dataset=dataset)
    print(f"  upload of {batch.staged_count} files ({batch.staged_bytes / 1e6:.1f} MB) returned in {elapsed:.2f} s")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--utk", type=int, default=4000, help="UTKFace crops in the folder (of 4000)")
    parser.add_argument("--large", type=int, default=20, help="3000x2000 upscaled LFW copies in the folder")
    parser.add_argument("--uploads", type=int, default=5000, help="small files in the timed upload")
    parser.add_argument("--keep", action="store_true", help="keep the bench database and media")
    args = parser.parse_args()

    configure()
    recreate_database(DB_URL, "the bench database")
    shutil.rmtree(MEDIA, ignore_errors=True)
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    user = User.objects.create_user("bench", password="not-a-secret")
    user.groups.add(Group.objects.get_or_create(name=settings.CURATOR_GROUP)[0])
    count = build_folder(Path(settings.CURATOR_DEV_DATASET), args.utk, args.large)
    print(f"{count} photos in {PHOTOS}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}", flush=True)

    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    workers: list[CeleryWorker] = []
    e2e, alone = [], []
    try:
        workers.append(CeleryWorker("align", 2, BENCH_DIR / "import-align-worker.log", name="import-bench-align"))
        workers.append(CeleryWorker("import", 1, BENCH_DIR / "import-import-worker.log", name="import-bench-import"))
        for run in range(1, args.repeats + 1):
            print(f"run {run} (load average {os.getloadavg()[0]:.1f}):", flush=True)
            rate, dataset = end_to_end(user, run, workers)
            e2e.append(rate)
            alone.append(align_only(dataset, workers))
            print(f"  overlap ratio {e2e[-1] / alone[-1]:.2f}", flush=True)
    finally:
        for worker in workers:
            worker.stop()
    uploads = []
    files = small_jpegs(args.uploads)
    print("upload (after one small warm-up upload, as a running web process is warm):")
    upload_return_seconds(user, files[:10])
    for _ in range(args.repeats):
        uploads.append(upload_return_seconds(user, files))
    redis_cleanup(os.environ["CURATOR_REDIS_PREFIX"])
    if not args.keep:
        from django.db import connections

        connections.close_all()
        drop_database(DB_URL, "the bench database")
        shutil.rmtree(MEDIA, ignore_errors=True)
        shutil.rmtree(PHOTOS, ignore_errors=True)
    result = {
        "end_to_end_img_per_s": round(statistics.median(e2e), 1),
        "align_only_img_per_s": round(statistics.median(alone), 1),
        "overlap_ratio": round(statistics.median(e / a for e, a in zip(e2e, alone, strict=True)), 2),
        "upload_5000_return_s": round(statistics.median(uploads), 2),
    }
    print(
        f"medians of {args.repeats}: end to end {result['end_to_end_img_per_s']} img/s, alignment alone "
        f"{result['align_only_img_per_s']} img/s, overlap {result['overlap_ratio']} (goal >= 0.9); "
        f"upload of {args.uploads} files returned in {result['upload_5000_return_s']} s (goal < 5 s)"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
