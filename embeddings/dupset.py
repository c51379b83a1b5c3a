"""A labelled near-duplicate set built from real faces, to measure embeddings.duplicates:

- positives: copies of a real photo re-encoded (JPEG quality 40-70), resized (0.5x-1.5x),
  cropped (5-10 % off the edges), mirrored, or brightness-changed (and some of these combined);
- negatives: every pair of different originals (different people; where the data names a
  person with several photos, the same person's other photos too) and their copies.

Each image goes through the real path (detection and landmarks of curator.faces.pipeline, the
features of embeddings.features), so the figures are those of the app. Used by
bench/embeddings.py on the dev data and by tests/embeddings/test_duplicates.py on the fixtures.

    items = build_items(paths, seed=0)           # [Item(name, source, person, data)]
    records = items_records(items)               # [FaceRecord] (the face of each item)
    precision, recall, detail = measure(items, records)
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

KINDS = ("jpeg", "resize", "crop", "flip", "brightness", "resize+jpeg", "crop+flip")


@dataclass
class Item:
    name: str
    source: int  # index of the original it is (a copy of)
    person: str  # the person shown ("" when unknown: taken as different from every other)
    data: bytes  # JPEG bytes


def _encode(image, quality: int = 92) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()


def augment(image, kind: str, rng: random.Random):
    """A PIL image changed as `kind` says; returns (image, JPEG quality to save it with)."""
    from PIL import Image, ImageEnhance, ImageOps

    quality = 92
    for part in kind.split("+"):
        if part == "jpeg":
            quality = rng.randint(40, 70)
        elif part == "resize":
            scale = rng.choice([rng.uniform(0.5, 0.8), rng.uniform(1.2, 1.5)])
            image = image.resize(
                (max(8, round(image.width * scale)), max(8, round(image.height * scale))), Image.BICUBIC
            )
        elif part == "crop":
            w, h = image.size
            fx, fy = rng.uniform(0.05, 0.10), rng.uniform(0.05, 0.10)
            dx, dy = round(w * fx), round(h * fy)
            # Off one or both sides, as a person cropping a photo does.
            left = rng.randint(0, dx)
            top = rng.randint(0, dy)
            image = image.crop((left, top, w - (dx - left), h - (dy - top)))
        elif part == "flip":
            image = ImageOps.mirror(image)
        elif part == "brightness":
            image = ImageEnhance.Brightness(image).enhance(rng.choice([rng.uniform(0.6, 0.8), rng.uniform(1.2, 1.4)]))
        else:
            raise ValueError(f"unknown augmentation {part}")
    return image, quality


def build_items(paths: list[Path], *, persons: list[str] | None = None, copies: int = 1, seed: int = 0) -> list[Item]:
    """The originals (as they are) and `copies` augmented copies of each, kinds in turn."""
    from PIL import Image

    rng = random.Random(seed)
    items = []
    k = 0
    for i, path in enumerate(paths):
        data = Path(path).read_bytes()
        person = (persons[i] if persons else "") or ""
        items.append(Item(f"{Path(path).name}", i, person, data))
        with Image.open(io.BytesIO(data)) as original:
            original.load()
            for c in range(copies):
                kind = KINDS[k % len(KINDS)]
                k += 1
                image, quality = augment(original.copy(), kind, rng)
                items.append(Item(f"{Path(path).name}~{kind}{c}", i, person, _encode(image, quality)))
    return items


def item_features(data: bytes):
    """(box, FaceFeatures) of the largest face of an image's bytes, as the app computes them; None
    when no face is found."""
    from curator.faces.pipeline import AlignOptions, detect_and_align, landmark_box
    from curator.images import decode
    from embeddings.features import photo_features

    rgb, _ = decode(data, max_pixels=50_000_000)
    faces = detect_and_align(rgb, AlignOptions(whole_image_fallback=True))
    if not faces:
        return None
    face = max(faces, key=lambda f: f.size_px)
    height, width = rgb.shape[:2]
    box = landmark_box(width=width, height=height, box=face.box, whole_image=face.whole_image)
    return box, photo_features(rgb, [box], pretrained_model="")[0]


def items_records(items: list[Item], *, processes: int = 1) -> list:
    """A FaceRecord per item (face id = position in `items`, image id the same: every item is
    its own photo); an item without a face gets a record without features."""
    import hashlib

    from embeddings.duplicates import FaceRecord

    if processes > 1:
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
            features = list(pool.map(item_features, [it.data for it in items], chunksize=4))
    else:
        features = [item_features(it.data) for it in items]
    records = []
    for i, (item, found) in enumerate(zip(items, features, strict=True)):
        record = FaceRecord(i, i, hashlib.sha256(item.data).hexdigest())
        if found is not None:
            f = found[1]
            record.vector = (f.descriptor + f.descriptor_flipped) / 2
            record.phash, record.phash_mirrored = f.region_phash, f.region_phash_mirrored
        records.append(record)
    return records


def measure(items: list[Item], records: list, **thresholds) -> tuple[float, float, dict]:
    """Pair precision and recall of the duplicate groups (complete linkage) on the set: a pair
    is a true duplicate when both items come from the same original."""
    from embeddings.duplicates import complete_linkage_groups, pair_evidence

    pairs = pair_evidence(records, **thresholds)
    grouped = set()
    for group in complete_linkage_groups(pairs):
        grouped |= {(a, b) for i, a in enumerate(group) for b in group[i + 1 :]}
    truth = {(a, b) for a in range(len(items)) for b in range(a + 1, len(items)) if items[a].source == items[b].source}
    tp = len(grouped & truth)
    precision = tp / len(grouped) if grouped else 1.0
    recall = tp / len(truth) if truth else 1.0
    misses = sorted(truth - grouped)
    false = sorted(grouped - truth)
    detail = {
        "pairs_true": len(truth),
        "pairs_found": len(grouped),
        "missed": [(items[a].name, items[b].name) for a, b in misses[:20]],
        "false": [(items[a].name, items[b].name, _why(pairs.get((a, b)))) for a, b in false[:20]],
        "missed_by_kind": _by_kind(items, misses),
    }
    return precision, recall, detail


def _why(e) -> dict:
    return {} if e is None else {"hash_bits": e.hash_bits, "descriptor": e.descriptor, "tests": e.tests}


def _by_kind(items: list[Item], pairs) -> dict[str, int]:
    out: dict[str, int] = {}
    for a, b in pairs:
        for i in (a, b):
            if "~" in items[i].name:
                kind = items[i].name.split("~")[1].rstrip("0123456789")
                out[kind] = out.get(kind, 0) + 1
    return out


def pair_distance_table(items: list[Item], records: list) -> dict[str, np.ndarray]:
    """Hash bits and descriptor distances of true and false pairs (for tuning the thresholds)."""
    from embeddings.duplicates import descriptor_distance, region_hash_distance

    out: dict[str, list] = {"true_hash": [], "true_desc": [], "false_hash": [], "false_desc": []}
    for a in range(len(items)):
        for b in range(a + 1, len(items)):
            side = "true" if items[a].source == items[b].source else "false"
            h = region_hash_distance(records[a], records[b])
            d = descriptor_distance(records[a], records[b])
            if h is not None:
                out[f"{side}_hash"].append(h)
            if d is not None:
                out[f"{side}_desc"].append(d)
    return {k: np.asarray(v) for k, v in out.items()}


@dataclass(frozen=True)
class Person:
    """What the dev set says of the person in a photo ("" where it does not say)."""

    identity: str = ""  # LFW names people
    gender: str = ""
    race: str = ""  # UTKFace only
    source: str = ""


def surely_different(p: Person, q: Person) -> bool:
    """Two photos show different people: different names, or (where nobody is named, UTKFace)
    different sources, genders or races. Two unnamed photos of one gender and race may be one
    person (UTKFace holds the same photo under two ages), so they are never taken as different."""
    if p.identity and q.identity:
        return p.identity != q.identity
    return p.source != q.source or p.gender != q.gender or bool(p.race and q.race and p.race != q.race)


def lookalike_pairs(people: list[Person], records: list, *, count: int = 200) -> list[tuple[int, int]]:
    """Pairs of DIFFERENT people whose faces look alike to the region hash: the `count` pairs of
    records of surely different people with the fewest bits between their face regions
    (mirrored included), and the pairs tied with the last one. The hash sees the low
    frequencies of the region (pose, light, framing), so these are the pairs a hash-only test
    confuses (issue 20: two different men 6 bits apart were flagged "near-identical image")."""
    hashed = [i for i, r in enumerate(records) if r.phash is not None]
    if len(hashed) < 2:
        return []
    own = np.array([records[i].phash for i in hashed], dtype=np.int64).view(np.uint64)
    mirrored = np.array(
        [records[i].phash if records[i].phash_mirrored is None else records[i].phash_mirrored for i in hashed],
        dtype=np.int64,
    ).view(np.uint64)
    who = [people[i] for i in hashed]
    scored: list[tuple[int, int, int]] = []
    for k in range(len(hashed) - 1):
        rest = slice(k + 1, len(hashed))
        bits = np.minimum(_popcount(own[rest] ^ own[k]), _popcount(mirrored[rest] ^ own[k]))
        # Keep only the closest `count` of each row: the overall closest `count` are among them.
        kept = 0
        for j in np.argsort(bits, kind="stable"):
            b = k + 1 + int(j)
            if not surely_different(who[k], who[b]):
                continue
            scored.append((int(bits[j]), hashed[k], hashed[b]))
            kept += 1
            if kept == count:
                break
    scored.sort()
    if len(scored) <= count:
        return [(a, b) for _, a, b in scored]
    cut = scored[count - 1][0]
    return [(a, b) for bits, a, b in scored if bits <= cut]


def _popcount(values: np.ndarray) -> np.ndarray:
    return np.unpackbits(values.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)


def lookalikes_flagged(records: list, pairs: list[tuple[int, int]]) -> dict:
    """How many look-alike pairs the duplicate tests flag (any test), and how many the region hash
    alone would (the rule before issue 20), with the distances of those flagged."""
    from embeddings.duplicates import HASH_MAX_BITS, evidence_of

    flagged, hash_alone, examples, nearest = 0, 0, [], None
    for a, b in pairs:
        e = evidence_of(records[a], records[b])
        within = e.hash_bits is not None and e.hash_bits <= HASH_MAX_BITS
        hash_alone += within
        if within and e.descriptor is not None:  # how close the descriptor test comes to failing
            nearest = e.descriptor if nearest is None else min(nearest, e.descriptor)
        if e.tests:
            flagged += 1
            examples.append((a, b, _why(e)))
    return {
        "pairs": len(pairs),
        "flagged": flagged,
        "flagged_by_hash_alone": hash_alone,
        "nearest_descriptor_within_hash": nearest,
        "examples": examples[:10],
    }
