"""Screenshots of every page, as a person sees them at 1366x768, for reviewing the UI at a glance.

    .venv/bin/python bench/screens.py [--out var/screens] [--keep] [--no-train]

1. A throwaway PostgreSQL database (BENCH_DATABASE_URL, default
   postgres://postgres@127.0.0.1:5432/curator_bench_screens, dropped and re-created, dropped again
   at the end unless --keep) and a temporary MEDIA_ROOT.
2. The 41 fixture faces (tests/fixtures/faces: LFW photos in female/male folders, UTKFace crops
   named with their labels) imported through the real pipeline: `import_server_folder`, then the
   alignment job's chunks run by dlib in this process (Celery eager, so no worker and no Redis
   traffic). A few faces lose their label (for the suggestion and least-sure queues), a few are
   relabelled against the model (the dispute queue), one is marked "not a face".
3. A model version the cheap way: the `embedding` architecture (dlib descriptors + logistic
   regression, about 20 s) through the training service, as the `train` worker runs it, with
   its predictions of every face (--no-train skips it and the model pages).
4. `manage.py runserver` on a free port against that database; Playwright drives Debian's
   Chromium (tests/chromium.py) at 1366x768, logs in as a curator (and as staff for the admin)
   and saves one PNG per page into --out.

Pages that other work adds (the face page `labeling:face`, the embeddings map `labeling:map`)
are taken when their URL names exist and skipped with a message otherwise. Prints the files and
ends with one JSON line: {"pages": N, "skipped": N, "seconds": S}.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from postgres_admin import drop_database, recreate_database  # noqa: E402 (bench/, beside this script)

FIXTURES = ROOT / "tests" / "fixtures" / "faces"
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/curator_bench_screens"
PASSWORD = secrets.token_urlsafe(12)
VIEWPORT = {"width": 1366, "height": 768}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup_data(train: bool) -> dict:
    """Migrate, import and align the fixture faces, make a model version; returns the ids the
    page list needs."""
    import django

    django.setup()
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command

    from curator.celery import app

    # Tasks run where they are queued: the import's alignment job runs its chunks right here.
    app.conf.task_always_eager = True
    call_command("migrate", verbosity=0, interactive=False)

    from curator.models import AlignmentJob, Face, ImportBatch
    from curator.services import imports
    from curator.services.datasets import dataset_create
    from labeling import services as labeling

    alice = User.objects.create_user("alice", password=PASSWORD)
    alice.groups.add(Group.objects.get_or_create(name="curators")[0])
    User.objects.create_superuser("admin", password=PASSWORD)
    dataset = dataset_create(user=alice, name="fixture faces", classes=["female", "male"], min_faces_per_class=5)
    started = time.monotonic()
    batch = imports.import_server_folder(dataset=dataset, path=str(FIXTURES), user=alice, check_roots=False)
    batch = ImportBatch.objects.get(pk=batch.pk)
    job = AlignmentJob.objects.filter(dataset=dataset).order_by("-pk").first()
    faces = list(Face.objects.filter(dataset=dataset).order_by("pk"))
    print(
        f"imported {batch.imported_count} photos, aligned {len(faces)} faces "
        f"(job {job.pk if job else '-'}: {job.status if job else 'none'}) in {time.monotonic() - started:.1f} s",
        flush=True,
    )
    if not faces:
        raise SystemExit("no face was aligned: is dlib installed (make setup)?")
    labeling.splits_assign(user=alice, dataset=dataset, seed=0)
    ids = {"dataset": dataset.pk, "batch": batch.pk, "job": job.pk if job else None, "face": faces[0].pk}

    version = None
    if train:
        from training.services import model_version_activate, training_job_create, training_job_run

        started = time.monotonic()
        tjob = training_job_create(dataset=dataset, user=alice, architecture="embedding", enqueue=False)
        tjob = training_job_run(job_id=tjob.pk)
        if tjob.status != "succeeded":
            print(f"training failed, model pages skipped: {tjob.error}", flush=True)
        else:
            version = model_version_activate(model_version=tjob.model_version)
            print(f"trained embedding v{version.number} in {time.monotonic() - started:.1f} s", flush=True)
            ids.update(training_job=tjob.pk, version=version.pk)

    # Queues with something in them: unlabelled faces (suggestions, least sure), labels the model
    # disputes, one false detection.
    labeling.faces_update(user=alice, dataset=dataset, faces=[f.pk for f in faces[-6:]], changes={"label": ""})
    if version is not None:
        from training.models import Prediction

        for p in Prediction.objects.filter(model_version=version, face__in=faces[1:4]):
            other = "male" if p.predicted_label == "female" else "female"
            labeling.faces_update(user=alice, dataset=dataset, faces=[p.face_id], changes={"label": other})
    action = labeling.faces_mark_not_face(user=alice, dataset=dataset, faces=[faces[4].pk])
    ids["action"] = action.pk

    # Identity clusters (computed after the descriptors; again here in case the embed step was
    # skipped), the largest one for its own page.
    from django.db.models import Count

    from embeddings.models import FaceIdentity
    from embeddings.services import identity_clusters_update

    identity_clusters_update(dataset_id=dataset.pk)
    largest = (
        FaceIdentity.objects.filter(dataset=dataset)
        .values("cluster")
        .annotate(n=Count("face_id"))
        .order_by("-n", "cluster")
        .first()
    )
    ids["cluster"] = largest["cluster"] if largest else None

    from django.db import connections

    connections.close_all()
    return ids


def page_list(ids: dict) -> tuple[list[tuple[str, str, str]], list[str]]:
    """[(file name, URL, what to wait for)] and the pages skipped (with why)."""
    from django.urls import NoReverseMatch, reverse

    d, v = ids["dataset"], ids.get("version")
    wanted = [
        ("01-dataset-list", "curator:dataset_list", [], "table, main"),
        ("02-dataset-detail", "curator:dataset_detail", [d], "main"),
        ("03-dataset-new", "curator:dataset_create", [], "form"),
        ("04-import", "curator:dataset_import", [d], "form"),
        ("05-import-report", "curator:batch_detail", [d, ids["batch"]], "main"),
        ("06-alignment-job", "curator:job_detail", [d, ids["job"]], "#job-progress"),
        ("07-grid", "labeling:grid", [d], "#detail .face-detail"),
        ("08-grid-panels-open", "labeling:grid", [d], "#detail .face-detail"),
        ("09-face-page", "labeling:face", [d, ids["face"]], "main"),
        ("10-overview", "labeling:overview", [d], "main"),
        ("11-duplicates", "labeling:duplicates", [d], "main"),
        ("11a-identities", "labeling:identities", [d], "#identity-summary"),
        ("11b-identity-cluster", "labeling:identity_cluster", [d, ids.get("cluster")], "#cluster-faces"),
        ("12-history", "labeling:history", [d], "main"),
        ("13-revert", "labeling:revert", [d, ids["action"]], "main"),
        ("14-embeddings-map", "labeling:map", [d], "main"),
        ("15-review-index", "review:index", [d], "main"),
        ("16-review-disputes", "review:version_queue", [d, v], "main"),
        ("17-review-suggestions", "review:suggestions", [d, v], "main"),
        ("18-review-least-sure", "review:active_queue", [d, v], "main"),
        ("19-training", "training:dataset_training", [d], "main"),
        ("20-train-form", "training:job_create", [d], "form"),
        ("21-training-job", "training:job_detail", [ids.get("training_job")], "main"),
        ("22-version", "training:version_detail", [v], "main"),
        ("23-compare", "training:version_compare", [d], "main"),
        ("24-predict", "predict:page", [], "main"),
        ("25-admin", "admin:index", [], "#content"),
        ("26-admin-import-batches", "admin:curator_importbatch_changelist", [], "#content"),
    ]
    pages, skipped = [], []
    for name, url_name, args, wait in wanted:
        if any(a is None for a in args):
            why = "no identity cluster (no descriptors)" if name.startswith("11b") else None
            skipped.append(f"{name}: {why or 'no model version (training skipped or failed)'}")
            continue
        try:
            url = reverse(url_name, args=args)
        except NoReverseMatch:
            skipped.append(f"{name}: no URL named {url_name} yet")
            continue
        if name == "08-grid-panels-open":
            url += "?panels=open"
        if name == "23-compare" and v:
            url += f"?a={v}&b={v}"
        pages.append((name, url, wait))
    return pages, skipped


def wait_ready(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"runserver exited with {process.returncode}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
            return
        except OSError:
            time.sleep(0.3)
    raise SystemExit("runserver did not answer in time")


def login(context, base: str, username: str):
    page = context.new_page()
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/accounts/login/" not in url)
    return page


def shoot(browser, base: str, pages: list, out: Path) -> list[Path]:
    saved = []
    curator = browser.new_context(viewport=VIEWPORT)
    curator.set_default_timeout(20_000)
    page = login(curator, base, "alice")
    staff = browser.new_context(viewport=VIEWPORT)
    staff.set_default_timeout(20_000)
    admin = login(staff, base, "admin")
    for name, url, wait in pages:
        tab = admin if name.startswith("2") and "admin" in name else page
        tab.goto(f"{base}{url}")
        try:
            tab.wait_for_selector(wait, timeout=10_000)
        except Exception:  # a page without the element is still worth a picture
            print(f"  {name}: {wait} did not show", flush=True)
        tab.wait_for_timeout(300)
        path = out / f"{name}.png"
        tab.screenshot(path=str(path))
        saved.append(path)
        if name == "07-grid":
            # The same page with the `?` key map, then the focused face's photo full screen.
            tab.keyboard.press("?")
            tab.wait_for_selector("#keymap:not([hidden])")
            saved.append(out / "07b-grid-keymap.png")
            tab.screenshot(path=str(saved[-1]))
            tab.keyboard.press("Escape")
            tab.keyboard.press("p")
            tab.wait_for_selector("#photo-view:not([hidden]) svg.photo")
            tab.wait_for_timeout(300)
            saved.append(out / "07c-grid-photo.png")
            tab.screenshot(path=str(saved[-1]))
            tab.keyboard.press("Escape")
            saved.append(out / "07d-face-panel.png")
            tab.locator("#detail").screenshot(path=str(saved[-1]))
    # The login page, logged out.
    anonymous = browser.new_context(viewport=VIEWPORT)
    login_page = anonymous.new_page()
    login_page.goto(f"{base}/accounts/login/")
    login_page.fill("#id_username", "alice")
    login_page.fill("#id_password", "wrong")
    login_page.click("button[type=submit]")
    login_page.wait_for_selector("#login-error")
    saved.append(out / "00-login-error.png")
    login_page.screenshot(path=str(saved[-1]))
    for context in (curator, staff, anonymous):
        context.close()
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "var" / "screens"))
    parser.add_argument("--keep", action="store_true", help="keep the database and media folder")
    parser.add_argument("--no-train", action="store_true", help="no model version (faster; model pages skipped)")
    args = parser.parse_args()
    started = time.monotonic()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    database_url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    media_root = tempfile.mkdtemp(prefix="curator-screens-")
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        MEDIA_ROOT=media_root,
        DEBUG="1",  # runserver serves the static files
        DJANGO_SETTINGS_MODULE="curator.settings",
        CURATOR_IMPORT_ROOTS=str(FIXTURES),
    )
    os.environ.update(env)
    recreate_database(database_url, "BENCH_DATABASE_URL")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    server = None
    try:
        ids = setup_data(train=not args.no_train)
        pages, skipped = page_list(ids)
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload", "--nothreading"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_ready(port, server)
        from playwright.sync_api import sync_playwright

        from tests.chromium import CHROMIUM, CHROMIUM_ARGS

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            saved = shoot(browser, f"http://127.0.0.1:{port}", pages, out)
            browser.close()
        for path in saved:
            print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}  {path.stat().st_size // 1024} KB")
        for reason in skipped:
            print(f"skipped {reason}")
        seconds = round(time.monotonic() - started, 1)
        print(json.dumps({"pages": len(saved), "skipped": len(skipped), "seconds": seconds}))
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=10)
        if not args.keep:
            drop_database(database_url, "BENCH_DATABASE_URL")
            shutil.rmtree(media_root, ignore_errors=True)
        else:
            print(f"kept {database_url} and {media_root}")


if __name__ == "__main__":
    main()
