"""Drill-down speed on a large dataset: the version page with its clickable plots, the curation
page with its clickable histograms, and the grid pages their links open.

    .venv/bin/python bench/drilldown.py [--faces 100000] [--repeat 5] [--reset]

Uses bench/grid.py's synthetic dataset (DATABASE_URL, default .../curator_bench_drill), gives its
model version a snapshot (training_data_collect + snapshot_write, as a job does) and an
evaluation from its stored predictions, then times with the Django test Client: the version page
cold (plots drawn) and warm (cached), the curation page cold and warm, and the grid for every
confusion cell, every slice's errors, every calibration bin and every bar of the sharpness
histogram, checking each grid count against the figure it comes from.
The last line is JSON: {"version_page_cold_ms", "version_page_warm_ms", "curation_cold_ms",
"drill_grid_p50_ms", "drill_grid_p95_ms", "drill_links", "count_mismatches"}.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from support import bench_django_setup, bench_environment, timed_get  # noqa: E402 (bench/, beside this script)

bench_environment("postgres://postgres@127.0.0.1:5432/curator_bench_drill")
import grid  # noqa: E402 (bench/grid.py: the synthetic dataset)

LINK = re.compile(r'<g id="([^"]+)">\s*<a xlink:href="([^"]+)"')


def timed_page(client, url: str) -> tuple[float, str]:
    ms, body = timed_get(client, url)
    return ms, body.decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="timed requests per link (after one warm-up)")
    parser.add_argument("--reset", action="store_true")
    args = parser.parse_args()

    bench_django_setup()
    from django.core.cache import cache
    from django.test import Client

    from labeling.selectors import quality_histogram_counts

    dataset, user = grid.fill(args.faces, args.reset)
    version = grid.evaluated_version(dataset)
    metrics = version.metrics
    client = Client()
    client.force_login(user)

    cache.clear()
    cold, body = timed_page(client, f"/training/versions/{version.pk}/")
    warm = statistics.median(timed_get(client, f"/training/versions/{version.pk}/")[0] for _ in range(args.repeat))
    print(f"version page: cold {cold:.0f} ms (plots drawn), warm {warm:.0f} ms ({metrics['n_test']} test faces)")
    links = {gid: html.unescape(url) for gid, url in LINK.findall(body)}

    expected: dict[str, int] = {}
    matrix = metrics["confusion_matrix"]
    for i, row in enumerate(matrix):
        for j, n in enumerate(row):
            expected[f"cell-{i}-{j}"] = n
    for b in metrics["calibration"]:
        expected[f"bin-{b['low']}-{b['high']}"] = b["n"]
    for kind, rows in metrics["slices"].items():
        for r in rows:
            expected[f"slice-{kind}-{r['value']}"] = r["n"]

    cache.clear()
    cold_curation, body = timed_page(client, f"/labeling/{dataset.pk}/curate/")
    print(f"curation page: cold {cold_curation:.0f} ms (histograms binned and drawn)")
    sharpness = next(h for h in quality_histogram_counts(dataset=dataset) if h["metric"] == "sharpness")
    for gid, url in LINK.findall(body):
        match = re.fullmatch(r"bar-sharpness-(included|excluded)-(\d+)", gid)
        if match:
            links[gid] = html.unescape(url)
            expected[gid] = sharpness[match.group(1)][int(match.group(2))]

    times, mismatches = [], 0
    print(f"\ngrid pages opened by {len(expected)} links ({args.repeat} timed requests each, ms):")
    for gid, n in expected.items():
        url = links[gid]
        _, page = timed_page(client, url)  # warm-up
        total = int(re.search(r'id="grid"[^>]*?data-total="(\d+)"', page, re.S).group(1))
        mismatches += total != n
        runs = [timed_get(client, url)[0] for _ in range(args.repeat)]
        times += runs
        print(f"  {gid:36s} p50 {statistics.median(runs):7.1f}  ({total} faces, figure says {n})")

    figures = {
        "version_page_cold_ms": round(cold),
        "version_page_warm_ms": round(warm),
        "curation_cold_ms": round(cold_curation),
        "drill_grid_p50_ms": round(statistics.median(times), 1),
        "drill_grid_p95_ms": round(grid.percentile(times, 0.95), 1),
        "drill_links": len(expected),
        "count_mismatches": mismatches,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
