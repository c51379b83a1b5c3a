"""Latency and throughput of POST /api/v1/predict against the server as it runs in production.

    .venv/bin/python bench/serve.py [--architecture cnn] [--workers 4] [--upsample 0]
                                    [--requests 200] [--seconds 60] [--clients 8]

Creates its own PostgreSQL database (BENCH_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/curator_bench_serve, dropped and re-created) and MEDIA_ROOT (a
temporary folder), migrates, loads the 41 fixture faces, trains a model on them through the
training service (one epoch: the figures measure serving, not accuracy) and activates it. Then it
starts gunicorn as in production (`gunicorn curator.wsgi`, several sync workers, DEBUG=0, a
SECRET_KEY, CURATOR_SSL_REDIRECT=0 and CURATOR_SECURE_COOKIES=0 because it talks plain HTTP on
localhost), warms every worker, and measures with a 640x480 JPEG holding one face:

- latency: one client, `--requests` sequential requests, p50 and p95 in ms (wall clock at the
  client, connection set-up included);
- throughput: `--clients` concurrent clients for `--seconds` seconds, requests per second, and the
  error count (any answer but 200 with one face, or a failed connection) over both phases.

Goals on the 2-core machine: p50 < 60 ms, >= 20 requests/s with 8 clients, zero errors.
The last line is JSON: {"p50_ms": .., "p95_ms": .., "rps_8": .., "errors": ..}.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from postgres_admin import drop_database, recreate_database  # noqa: E402 (bench/, beside this script)

FIXTURES = ROOT / "tests" / "fixtures" / "faces"
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/curator_bench_serve"
PASSWORD = secrets.token_urlsafe(16)


def production_env(database_url: str, media_root: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        MEDIA_ROOT=media_root,
        STATIC_ROOT=os.path.join(media_root, "static"),
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(50),
        CURATOR_SSL_REDIRECT="0",
        CURATOR_SECURE_COOKIES="0",
        CURATOR_REDIS_PREFIX=f"bench-serve-{os.getpid()}:",
        DJANGO_SETTINGS_MODULE="curator.settings",
        PYTHONUNBUFFERED="1",
        TF_CPP_MIN_LOG_LEVEL="2",
        # The bench measures serving capacity; a deployment's rate limits would cap it at 1-2/s.
        CURATOR_PREDICT_RATE="off",
        CURATOR_PREDICT_IP_RATE="off",
    )
    return env


def setup_data(architecture: str, upsample: int) -> tuple[str, int]:
    """Migrate, load the fixture faces, train and activate a model; returns (token, version id)."""
    import django

    django.setup()
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token

    call_command("migrate", verbosity=0, interactive=False)
    call_command("collectstatic", verbosity=0, interactive=False)  # DEBUG=0 serves the manifest's files
    from curator.services.datasets import dataset_create
    from tests.training.factories import add_faces, fixture_face_rows
    from training.services import model_version_activate, training_job_create, training_job_run

    user = User.objects.create_user("bench-alice", password=PASSWORD)
    user.groups.add(Group.objects.get_or_create(name="curators")[0])
    # Faces in 640x480 photos are large: the dataset detects at the original scale (upsample 0),
    # a per-dataset setting the predict API follows exactly as alignment does.
    dataset = dataset_create(
        user=user, name="bench-serve", classes=["female", "male"], upsample=upsample, min_faces_per_class=5
    )
    add_faces(dataset, fixture_face_rows(FIXTURES))
    started = time.monotonic()
    job = training_job_create(
        dataset=dataset, user=user, architecture=architecture, config={"epochs": 1}, enqueue=False
    )
    job = training_job_run(job_id=job.pk)
    if job.status != "succeeded":
        raise SystemExit(f"training failed: {job.error}\n{job.log}")
    version = model_version_activate(model_version=job.model_version)
    print(f"trained {architecture} v{version.number} in {time.monotonic() - started:.1f} s", flush=True)
    token = Token.objects.create(user=user).key
    from django.db import connections

    connections.close_all()
    return token, version.pk


def photo_640x480() -> bytes:
    """A 640x480 JPEG with one face: an LFW photo scaled to 480 px high, centred on a grey field."""
    from PIL import Image

    path = sorted((FIXTURES / "lfw" / "female").glob("*.jpg"))[0]
    with Image.open(path) as face:
        face = face.convert("RGB").resize((480, 480), Image.LANCZOS)
    canvas = Image.new("RGB", (640, 480), (118, 120, 116))
    canvas.paste(face, (80, 0))
    buffer = io.BytesIO()
    canvas.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    def __init__(self, port: int, token: str, body: bytes):
        self.port, self.body = port, body
        self.headers = {"Authorization": f"Token {token}", "Content-Type": "image/jpeg"}
        self.server_timings: list[dict] = []

    def predict(self) -> tuple[bool, float, str]:
        started = time.perf_counter()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
            conn.request("POST", "/api/v1/predict", body=self.body, headers=self.headers)
            response = conn.getresponse()
            data = response.read()
            conn.close()
        except OSError as exc:
            return False, time.perf_counter() - started, f"{type(exc).__name__}: {exc}"
        elapsed = time.perf_counter() - started
        if response.status != 200:
            return False, elapsed, f"HTTP {response.status}: {data[:200]!r}"
        body = json.loads(data)
        faces = body["faces"]
        self.server_timings.append(body["timings_ms"])
        if len(faces) != 1:
            return False, elapsed, f"{len(faces)} faces instead of 1"
        return True, elapsed, ""


def wait_ready(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("gunicorn exited early")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("gunicorn did not start listening")


def concurrent(client: Client, clients: int, seconds: float) -> tuple[int, list[str], list[float]]:
    ok = 0
    errors: list[str] = []
    times: list[float] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def run() -> None:
        nonlocal ok
        while time.monotonic() < stop_at:
            good, elapsed, error = client.predict()
            with lock:
                if good:
                    ok += 1
                    times.append(elapsed)
                else:
                    errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return ok, errors, times


def warm(client: Client, workers: int) -> None:
    """Every worker loads TensorFlow, the model and dlib's files on its first request (tens of
    seconds on a busy machine). Send concurrent rounds until a whole round of at least four
    requests per worker is answered without error by warm workers (the server reports the model
    loading time of each request in `timings_ms.load`)."""
    for round_number in range(30):
        before = len(client.server_timings)
        ok, errors, times = concurrent(client, max(workers * 2, 8), 5.0)
        loads = [t["load"] for t in client.server_timings[before:]]
        slowest_load = max(loads) if loads else float("inf")
        print(
            f"warm-up round {round_number + 1}: {ok} ok, {len(errors)} errors, "
            f"slowest model load in this round {slowest_load:.0f} ms",
            flush=True,
        )
        if errors:
            print("  e.g. " + errors[0], flush=True)
        if not errors and ok >= 4 * workers and slowest_load < 50:
            return
    raise SystemExit("the server did not warm up")


def live_mode_fps(port: int, seconds: float, workdir: str) -> float | None:
    """Frames per second the predict page's live mode reaches in Chromium (fake camera playing a
    face), as the page itself reports it; None when Chromium is missing."""
    from tests.chromium import CHROMIUM, CHROMIUM_ARGS, face_clip, fake_camera_args

    if not os.path.exists(CHROMIUM):
        return None
    from playwright.sync_api import sync_playwright

    clip = os.path.join(workdir, "face.mjpeg")
    face_clip(clip)
    args = CHROMIUM_ARGS + fake_camera_args(clip)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            page = browser.new_context(base_url=f"http://127.0.0.1:{port}", permissions=["camera"]).new_page()
            page.goto("/accounts/login/")
            page.fill("#id_username", "bench-alice")
            page.fill("#id_password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(lambda url: "/accounts/login/" not in url)
            page.goto("/predict/")
            page.click("#camera-start")
            page.wait_for_function("document.getElementById('camera-video').videoWidth > 0")
            page.check("#camera-live")
            page.locator("#live-overlay .pbox").first.wait_for(state="visible", timeout=60_000)
            samples = []
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                page.wait_for_timeout(2000)
                text = page.inner_text("#live-stats")
                samples.append(float(text.split(" frames/s")[0]))
            print(f"live mode: {page.inner_text('#live-stats')}", flush=True)
            return statistics.median(samples)
        finally:
            browser.close()


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", default="cnn", choices=["cnn", "embedding", "seed-cnn"])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--upsample", type=int, default=0)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--live-seconds", type=float, default=12.0, help="measure the page's live mode (0: skip)")
    parser.add_argument("--keep", action="store_true", help="keep the database and media folder")
    args = parser.parse_args()

    # A SIGTERM (e.g. from `timeout`) still stops gunicorn and drops the database.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    database_url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    media_root = tempfile.mkdtemp(prefix="curator-bench-serve-")
    env = production_env(database_url, media_root)
    os.environ.update(env)
    recreate_database(database_url, "BENCH_DATABASE_URL")
    server = None
    try:
        token, version_id = setup_data(args.architecture, args.upsample)
        port = free_port()
        command = [
            str(ROOT / ".venv" / "bin" / "gunicorn"),
            "curator.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(args.workers),
            "--timeout",
            "300",  # a cold worker's first request loads TensorFlow and the model
            "--log-level",
            "warning",
        ]
        print("starting: " + " ".join(command[1:]), flush=True)
        server = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
        wait_ready(port, server)
        client = Client(port, token, photo_640x480())
        warm(client, args.workers)

        latencies: list[float] = []
        errors: list[str] = []
        for _ in range(args.requests):
            good, elapsed, error = client.predict()
            if good:
                latencies.append(elapsed)
            else:
                errors.append(error)
        p50, p95 = pct(latencies, 0.5) * 1000, pct(latencies, 0.95) * 1000
        recent = client.server_timings[-len(latencies) :]
        parts = {k: statistics.median(t[k] for t in recent) for k in recent[0]} if recent else {}
        print("server time per request (median ms): " + ", ".join(f"{k} {v:.1f}" for k, v in parts.items()))
        print(
            f"one client, {args.requests} requests: p50 {p50:.1f} ms, p95 {p95:.1f} ms, {len(errors)} errors",
            flush=True,
        )

        ok, more_errors, times = concurrent(client, args.clients, args.seconds)
        errors += more_errors
        rps = ok / args.seconds
        print(
            f"{args.clients} clients for {args.seconds:.0f} s: {ok} ok, {rps:.1f} requests/s, "
            f"p50 {statistics.median(times) * 1000:.0f} ms, {len(more_errors)} errors",
            flush=True,
        )
        for error in errors[:5]:
            print("error: " + error, flush=True)
        if args.live_seconds > 0:
            fps = live_mode_fps(port, args.live_seconds, media_root)
            if fps is not None:
                print(f"live mode in Chromium (fake camera, 640x480 frames): {fps:.1f} frames/s (median)", flush=True)
        print(
            f"model v{version_id} {args.architecture}, {args.workers} gunicorn workers, upsample {args.upsample}",
            flush=True,
        )
        print(
            json.dumps(
                {"p50_ms": round(p50, 1), "p95_ms": round(p95, 1), "rps_8": round(rps, 1), "errors": len(errors)}
            )
        )
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
        if not args.keep:
            from django.db import connections

            connections.close_all()
            drop_database(database_url, "BENCH_DATABASE_URL")
            shutil.rmtree(media_root, ignore_errors=True)


if __name__ == "__main__":
    main()
