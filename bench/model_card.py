"""Model card speed on a large dataset: the zip (MODEL_CARD.md and its plots) and the Markdown
alone, as the version page's buttons download them.

    .venv/bin/python bench/model_card.py [--faces 100000] [--repeat 3] [--reset]

Uses bench/grid.py's synthetic dataset (DATABASE_URL, default .../curator_bench_modelcard), gives
its model version a snapshot and an evaluation from its stored predictions (as bench/drilldown.py
does), then times the downloads with the Django test Client and checks the zip's contents.
The last line is JSON: {"faces", "card_zip_cold_ms" (plots drawn), "card_zip_p50_ms" (plots cached), "card_md_p50_ms", "zip_bytes", "plots",
"markdown_lines"}.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from support import bench_django_setup, bench_environment, timed_get  # noqa: E402 (bench/, beside this script)

bench_environment("postgres://postgres@127.0.0.1:5432/curator_bench_modelcard")
import grid  # noqa: E402 (bench/grid.py: the synthetic dataset)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="timed downloads of each (after one warm-up)")
    parser.add_argument("--reset", action="store_true")
    args = parser.parse_args()

    bench_django_setup()
    from django.core.cache import cache
    from django.test import Client

    dataset, user = grid.fill(args.faces, args.reset)
    version = grid.evaluated_version(dataset)
    client = Client()
    client.force_login(user)

    cache.clear()
    cold, _ = timed_get(client, f"/training/versions/{version.pk}/model-card.zip")
    print(f"zip cold (plots drawn): {cold:.0f} ms")
    results = {}
    for name, url in (
        ("zip", f"/training/versions/{version.pk}/model-card.zip"),
        ("md", f"/training/versions/{version.pk}/model-card.md"),
    ):
        _, body = timed_get(client, url)  # warm-up: the zip's plots are cached from here on
        runs = [timed_get(client, url)[0] for _ in range(args.repeat)]
        results[name] = (statistics.median(runs), body)
        print(f"{name}: p50 {statistics.median(runs):.0f} ms over {args.repeat} downloads, {len(body)} bytes")

    with zipfile.ZipFile(io.BytesIO(results["zip"][1])) as bundle:
        names = bundle.namelist()
        markdown = bundle.read("MODEL_CARD.md").decode()
    plots = sorted(n for n in names if n.startswith("plots/"))
    print(f"zip holds MODEL_CARD.md ({len(markdown.splitlines())} lines) and {', '.join(plots)}")
    print(
        json.dumps(
            {
                "faces": args.faces,
                "card_zip_cold_ms": round(cold),
                "card_zip_p50_ms": round(results["zip"][0]),
                "card_md_p50_ms": round(results["md"][0]),
                "zip_bytes": len(results["zip"][1]),
                "plots": len(plots),
                "markdown_lines": len(markdown.splitlines()),
            }
        )
    )


if __name__ == "__main__":
    main()
