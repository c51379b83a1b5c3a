"""Identities page, cluster page, `identity=` grid filter, merge/split and revert on 100,000 faces
in PostgreSQL.

    .venv/bin/python bench/identities.py [--faces 100000] [--repeat 7] [--reset]

Fills DATABASE_URL (default postgres://postgres@127.0.0.1:5432/curator_bench_identities, created
when missing) with bench/grid.py's synthetic dataset, then gives every face an identity cluster
(FaceIdentity rows written directly, not dlib's clustering, which is not what is measured): cluster
sizes fall like a power law (a few clusters of hundreds of faces, most of one to three), a tenth of
the clusters known by name. Measures the server time (Django test Client: view, queries and
template) of the identities page (first page, a middle page, the last page, clusters of at least
5), a cluster's page, the grid filtered to the largest cluster, and the services: a merge of two
clusters, a split of 10 faces out of the largest, and the revert of the merge, each applying every
decision again over all the dataset's rows. Goal: pages p50 < 150 ms, each action < 2 s.
The last line is JSON: {"identities_p50_ms": .., "identities_p95_ms": .., "merge_s": .., ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/curator_bench_identities")

import grid  # noqa: E402 (bench/grid.py: its fill(), on this DATABASE_URL)
from support import bench_django_setup  # noqa: E402


def cluster_sizes(n: int) -> list[int]:
    """Sizes adding up to n, largest first: cluster k (from 1) holds about 400 / k faces, at
    least 1, until the faces run out."""
    sizes, k = [], 1
    while sum(sizes) < n:
        sizes.append(min(max(1, int(400 / k)), n - sum(sizes)))
        k += 1
    return sizes


def identities_fill(dataset) -> int:
    from django.db import connection
    from django.db.models import F

    from curator.models import Face
    from embeddings.models import FaceIdentity, IdentityDecision

    IdentityDecision.objects.filter(dataset=dataset).delete()
    ids = list(Face.objects.filter(dataset=dataset).order_by("pk").values_list("pk", flat=True))
    if FaceIdentity.objects.filter(dataset=dataset).count() == len(ids):
        # A previous run's clusters: back to the computed ones (its decisions are gone).
        FaceIdentity.objects.filter(dataset=dataset).update(cluster=F("computed_cluster"))
        print("reusing the identity clusters of a previous run")
        return len(cluster_sizes(len(ids)))
    FaceIdentity.objects.filter(dataset=dataset).delete()
    rows, start = [], 0
    for number, size in enumerate(cluster_sizes(len(ids))):
        name = f"Person_{number}" if number % 10 == 0 else ""
        for face_id in ids[start : start + size]:
            rows.append(
                FaceIdentity(
                    face_id=face_id,
                    dataset=dataset,
                    cluster=number,
                    computed_cluster=number,
                    known=bool(name),
                    name=name,
                )
            )
        start += size
    FaceIdentity.objects.bulk_create(rows, batch_size=10000)
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE embeddings_faceidentity")
    return len({r.cluster for r in rows})


def timed(client, url: str, params: dict, repeat: int) -> list[float]:
    response = client.get(url, params)  # warm-up
    if response.status_code != 200:
        raise SystemExit(f"{url} {params} answered {response.status_code}")
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        client.get(url, params)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7, help="timed requests per page (after one warm-up)")
    parser.add_argument("--reset", action="store_true", help="rebuild the bench dataset")
    args = parser.parse_args()

    bench_django_setup()
    from django.test import Client

    from embeddings.models import FaceIdentity
    from labeling import services

    dataset, user = grid.fill(args.faces, args.reset)
    t0 = time.perf_counter()
    clusters = identities_fill(dataset)
    print(f"{clusters} identity clusters over {args.faces} faces ready in {time.perf_counter() - t0:.1f} s")

    client = Client()
    client.force_login(user)
    base = f"/labeling/{dataset.pk}/identities/"
    last_page = -(-clusters // 24)
    pages = [
        ("identities page 1", base, {}),
        (f"identities page {last_page // 2}", base, {"page": str(last_page // 2)}),
        (f"identities page {last_page} (last)", base, {"page": str(last_page)}),
        ("identities, at least 5 faces", base, {"min_size": "5"}),
        ("cluster 0's page (400 faces)", f"{base}0/", {}),
        ("grid, identity=0", f"/labeling/{dataset.pk}/", {"identity": "0"}),
    ]
    all_times: list[float] = []
    figures: dict[str, float] = {}
    print(f"\n{args.repeat} timed requests per page (ms):")
    for name, url, params in pages:
        times = timed(client, url, params, args.repeat)
        all_times += times
        p50 = statistics.median(times)
        figures[name] = round(p50, 1)
        print(f"  {name:38s} p50 {p50:7.1f}  max {max(times):7.1f}")

    actions = {}
    t0 = time.perf_counter()
    merge = services.identities_merge(user=user, dataset=dataset, clusters=[1, 2])
    actions["merge_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    tens = list(
        FaceIdentity.objects.filter(dataset=dataset, cluster=0)
        .order_by("face_id")[:10]
        .values_list("face_id", flat=True)
    )
    services.identities_split(user=user, dataset=dataset, cluster=0, faces=tens)
    actions["split_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    services.bulk_action_revert(user=user, action=merge)
    actions["revert_s"] = time.perf_counter() - t0
    print("\nactions (s): " + ", ".join(f"{k[:-2]} {v:.2f}" for k, v in actions.items()))
    result = {
        "faces": args.faces,
        "clusters": clusters,
        "identities_p50_ms": round(statistics.median(all_times), 1),
        "identities_p95_ms": round(grid.percentile(all_times, 0.95), 1),
        **{k: round(v, 2) for k, v in actions.items()},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
