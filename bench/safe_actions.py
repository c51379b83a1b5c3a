"""Face page, history page and the previews of destructive actions on 100,000 faces in PostgreSQL.

    .venv/bin/python bench/safe_actions.py [--faces 100000] [--repeat 5] [--reset]

Fills DATABASE_URL (default postgres://postgres@127.0.0.1:5432/curator_bench_safe, created when
missing) with the same synthetic dataset as bench/grid.py, records a 10,000-face relabel and 200
single-face changes, then measures server time (Django test Client: view, queries, template) of:
the face page without a filter (prev/next by id) and with the grid's filter and sort (prev/next in
the grid's order: every matching id is read), the history page, the revert preview of the
10,000-face action, the rule preview and the "all matching" preview of the label-changes API.
Goal: every page p50 < 300 ms. The last line is JSON with the p50 of each, in ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from support import bench_django_setup, bench_environment  # noqa: E402 (bench/, beside this script)

bench_environment("postgres://postgres@127.0.0.1:5432/curator_bench_safe")


def timed(client, method: str, url: str, repeat: int, **kwargs) -> list[float]:
    call = getattr(client, method)
    response = call(url, **kwargs)  # warm-up
    if response.status_code != 200:
        raise SystemExit(f"{url}: HTTP {response.status_code}")
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        call(url, **kwargs)
        times.append((time.perf_counter() - t) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--reset", action="store_true")
    args = parser.parse_args()

    bench_django_setup()
    from django.test import Client
    from grid import fill, vacuum

    from curator.models import Face
    from labeling import services
    from labeling.models import BulkAction

    dataset, user = fill(args.faces, args.reset)
    big = BulkAction.objects.filter(dataset=dataset, kind="label", face_count=10_000).first()
    if big is None:
        ids = list(Face.objects.filter(dataset=dataset).order_by("id").values_list("id", flat=True)[:10_000])
        Face.objects.filter(pk__in=ids).update(label="male")
        big = services.faces_update(user=user, dataset=dataset, faces=ids, changes={"label": "female"})
        for fid in ids[:200]:
            services.faces_update(user=user, dataset=dataset, faces=[fid], changes={"is_unsure": True})
        vacuum()
    face = Face.objects.filter(dataset=dataset).order_by("id")[50_000 if args.faces > 50_000 else 0]

    client = Client()
    client.force_login(user)
    figures = {}
    cases = [
        ("face_page", "get", f"/datasets/{dataset.pk}/faces/{face.pk}/", {}),
        (
            "face_page_filtered",
            "get",
            f"/datasets/{dataset.pk}/faces/{face.pk}/",
            {"data": {"label": face.label or "unlabelled", "sort": "-sharpness"}},
        ),
        ("history", "get", f"/labeling/{dataset.pk}/history/", {}),
        (
            "history_of_a_face",
            "get",
            f"/labeling/{dataset.pk}/history/",
            {"data": {"face": big.events.first().face_id}},
        ),
        ("revert_preview_10k", "get", f"/labeling/{dataset.pk}/history/{big.pk}/revert/", {}),
        ("rule_preview", "get", f"/labeling/{dataset.pk}/curate/rules/preview/", {"data": {"min_size_px": "60"}}),
        (
            "bulk_preview_api",
            "post",
            f"/api/v1/datasets/{dataset.pk}/label-changes/",
            {
                "data": json.dumps({"filter": "label=female", "changes": {"is_excluded": True}, "preview": True}),
                "content_type": "application/json",
            },
        ),
    ]
    print(f"{args.faces} faces, {args.repeat} timed requests each (ms):")
    for name, method, url, kwargs in cases:
        times = timed(client, method, url, args.repeat, **kwargs)
        figures[f"{name}_p50_ms"] = round(statistics.median(times), 1)
        print(f"  {name:22s} p50 {statistics.median(times):7.1f}  max {max(times):7.1f}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
