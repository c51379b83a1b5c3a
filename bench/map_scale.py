"""The map page's drawing at scale (issue 21): the real static/embeddings/map.js in Chromium
(Playwright), fed N points through its own API routes (answered by Playwright from here: no
server, no database), then zoomed and panned, and lassoed.

    .venv/bin/python bench/map_scale.py [--points 1000000] [--lasso 100000]

Points: a map drawn like a real one (clusters of a few hundred faces over the square, Gaussian).
Figures: load (fetch, parse and grid of the binary points), frame time while zooming with the
wheel and panning (p50 and p95 of map.js's own draw times, and the frames per second the page
achieved: animation frames counted over the gesture), the time of a lasso holding --lasso points
(map.js's selectPolygon, the code a mouse lasso runs) and whether the selection is exactly the
points inside the polygon (checked here in numpy).

Last line: {"points", "load_ms", "draw_p50_ms", "draw_p95_ms", "fps", "lasso_points", "lasso_ms",
"lasso_exact"}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labeling.map_wire import map_points_pack  # noqa: E402
from tests.chromium import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

PAGE = """<!doctype html><html><head><meta charset="utf-8">
<style>#map-wrap{width:1000px;position:relative}</style></head><body hx-headers='{}'>
<div id="map-root" data-api="/api/map/" data-compute-url="/api/map/compute/" data-colours-url="/api/map/colours/"
 data-selections-url="/api/selections/" data-classes="female,male">
<select id="map-colour"><option value="label">label</option><option value="split">split</option></select>
<label><input type="radio" name="map-mode" value="lasso" checked></label>
<label><input type="radio" name="map-mode" value="pan"></label>
<span id="map-selection-count"></span><button id="map-open-grid"></button><button id="map-clear"></button>
<div id="map-status"><span id="map-status-text"></span><progress id="map-progress" hidden></progress></div>
<div id="map-wrap"><canvas id="map-canvas"></canvas>
<div id="map-tip" hidden><img alt=""><div class="map-tip-text"></div></div></div>
<aside id="map-legend"></aside></div>
<script src="/static/vendor/d3-7.min.js"></script><script type="module" src="/static/embeddings/map.js"></script>
</body></html>"""


def points(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0.05, 0.95, size=(max(1, n // 300), 2))
    xy = centres[rng.integers(0, len(centres), n)] + rng.normal(scale=0.01, size=(n, 2))
    return np.arange(1, n + 1, dtype=np.int64), np.clip(xy, 0, 1).astype(np.float32)


def binary(ids: np.ndarray, xy: np.ndarray) -> bytes:
    codes = (ids % 3).astype(np.uint8)
    return map_points_pack(
        ids=ids, xy=xy, classes=["female", "male"], label=codes, split=codes, excluded=np.zeros(len(ids), np.uint8)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--lasso", type=int, default=100_000, help="points the lasso should hold (about)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    ids, xy = points(args.points)
    body = binary(ids, xy)
    state = {
        "state": {
            "status": "succeeded",
            "current": True,
            "has_map": True,
            "points": args.points,
            "method": "bench",
            "seconds": 1,
            "descriptors": {"faces": args.points, "done": args.points, "running": False},
        }
    }

    def serve(route):
        url = route.request.url.split("//", 1)[1].split("/", 1)[1]
        path = "/" + url.split("?", 1)[0]
        if path == "/":
            return route.fulfill(body=PAGE, content_type="text/html")
        if path.startswith("/static/"):
            return route.fulfill(path=str(ROOT / path.lstrip("/")), content_type="text/javascript")
        if path == "/api/map/points/":
            return route.fulfill(body=body, content_type="application/octet-stream")
        if path == "/api/map/":
            return route.fulfill(body=json.dumps(state), content_type="application/json")
        return route.fulfill(status=404, body="{}", content_type="application/json")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.set_default_timeout(600_000)
        page.route("http://bench.local/**", serve)
        started = time.perf_counter()
        page.goto("http://bench.local/")
        page.wait_for_function("() => window.embeddingMap && window.embeddingMap.ready()", timeout=900_000)
        page.wait_for_function("() => window.embeddingMap.timings().draw.length > 0", timeout=900_000)
        load_ms = (time.perf_counter() - started) * 1000
        box = page.locator("#map-canvas").bounding_box()
        # The lasso first, on the unzoomed map: where map.js draws each point is known here.
        width, height = box["width"], box["height"]
        pad = 16
        screen = np.stack([pad + xy[:, 0] * (width - 2 * pad), pad + (1 - xy[:, 1]) * (height - 2 * pad)], axis=1)
        mid = np.median(screen, axis=0)
        half = 10.0
        while half < 2000 and (np.abs(screen - mid) < half).all(axis=1).sum() < args.lasso:
            half *= 1.05
        x0, y0, x1, y1 = mid[0] - half, mid[1] - half, mid[0] + half, mid[1] + half
        # A lasso as a hand draws it: 200 points around the square.
        edge = np.linspace(0, 1, 50, endpoint=False)
        polygon = np.concatenate(
            [
                np.stack([x0 + edge * (x1 - x0), np.full(50, y0)], axis=1),
                np.stack([np.full(50, x1), y0 + edge * (y1 - y0)], axis=1),
                np.stack([x1 - edge * (x1 - x0), np.full(50, y1)], axis=1),
                np.stack([np.full(50, x0), y1 - edge * (y1 - y0)], axis=1),
            ]
        ).tolist()
        count = page.evaluate("(p) => window.embeddingMap.selectPolygon(p)", polygon)
        lasso_ms = page.evaluate("() => window.embeddingMap.timings().lasso")
        chosen = set(page.evaluate("() => window.embeddingMap.selected()"))
        inside = (screen[:, 0] > x0) & (screen[:, 0] < x1) & (screen[:, 1] > y0) & (screen[:, 1] < y1)
        expected = set(ids[inside].tolist())
        page.click("#map-clear")
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.evaluate(
            "() => { window.__frames = 0; const f = () => { window.__frames++; requestAnimationFrame(f); };"
            " requestAnimationFrame(f); }"
        )
        before = page.evaluate("() => window.__frames")
        drawn = len(page.evaluate("() => window.embeddingMap.timings().draw"))
        gesture = time.perf_counter()
        page.mouse.move(cx, cy)
        for step in range(40):  # zoom in, then out, around the centre
            page.mouse.wheel(0, -120 if step < 20 else 120)
            page.wait_for_timeout(16)
        page.check("input[name='map-mode'][value='pan']")
        page.mouse.down()
        for step in range(30):
            page.mouse.move(cx + 8 * step, cy + 4 * step)
        page.mouse.up()
        seconds = time.perf_counter() - gesture
        frames = page.evaluate("() => window.__frames") - before
        draws = page.evaluate("() => window.embeddingMap.timings().draw")[-max(1, 120 - drawn) :]
        browser.close()
    result = {
        "points": args.points,
        "load_ms": round(load_ms),
        "draw_p50_ms": round(float(np.median(draws)), 1),
        "draw_p95_ms": round(float(np.percentile(draws, 95)), 1),
        "fps": round(frames / seconds, 1),
        "lasso_points": count,
        "lasso_ms": round(lasso_ms, 1),
        "lasso_exact": len(chosen ^ expected) <= int(0.0005 * len(expected)),  # points on the edge itself
    }
    print(
        f"{args.points} points: loaded and drawn in {result['load_ms']} ms; zoom and pan: draw p50 "
        f"{result['draw_p50_ms']} ms, p95 {result['draw_p95_ms']} ms, {result['fps']} frames/s over {seconds:.1f} s; "
        f"lasso of {count} points in {result['lasso_ms']} ms (exact: {result['lasso_exact']}, "
        f"{len(chosen ^ expected)} differ from numpy's test)"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
