"""The map's points in binary, the layout static/embeddings/map.js reads (no Django here, so
bench/map_scale.py packs its synthetic points with the same code the API serves them with)."""

from __future__ import annotations

import json
import struct

import numpy as np

SPLIT_NAMES = ["train", "val", "test", "none"]  # the split codes 0-3 (3: no split)


def map_points_pack(
    *, ids: np.ndarray, xy: np.ndarray, classes: list[str], label: np.ndarray, split: np.ndarray, excluded: np.ndarray
) -> bytes:
    """A little-endian uint32 length, that many bytes of JSON ({"n", "categories"}, padded with
    spaces to a multiple of 8 so the arrays after it stay aligned), then int64 ids [n], float32 x
    [n], float32 y [n], uint8 label [n] (len(classes): unlabelled), uint8 split [n], uint8 excluded [n]."""
    n = len(ids)
    header = json.dumps({"n": n, "categories": {"label": [*classes, "unlabelled"], "split": SPLIT_NAMES}}).encode()
    header += b" " * (-(len(header) + 4) % 8)
    return b"".join(
        [
            struct.pack("<I", len(header)),
            header,
            ids.astype("<i8").tobytes(),
            xy[:, 0].astype("<f4").tobytes(),
            xy[:, 1].astype("<f4").tobytes(),
            label.astype(np.uint8).tobytes(),
            split.astype(np.uint8).tobytes(),
            excluded.astype(np.uint8).tobytes(),
        ]
    )
