"""Near-duplicate faces, by three tests on each pair of faces of different photos:

- exact: the same original file (sha256);
- near-identical image: pHash of the face's region of the ORIGINAL photo (embeddings.features
  region_phashes) within HASH_MAX_BITS, the mirrored region counted too (a flipped copy leaks
  the same face into train and test as surely as a re-encoded one), AND the descriptors
  agreeing that it is one person (closer than NEAR_IDENTICAL_MAX_DISTANCE): the hash sees only
  the low frequencies of the region, so two different people in the same pose and light can
  hash 4-6 bits apart (issue 20: two different men 6 bits and 0.716 apart were flagged);
- same shot: dlib descriptors (flip-averaged) closer than SAME_SHOT_DISTANCE, far below dlib's
  0.6 same-person threshold: the same photo re-encoded, resized, cropped or brightened lands
  there, another photo of the same person almost never does.

Groups are formed by complete linkage: a face joins a group only if it matches EVERY face in
it (and a group has at most MAX_GROUP faces), so a chain a~b~c~...~z of look-alikes never
becomes one group of different people. Thresholds were tuned on the labelled set built by
bench/embeddings.py from the dev data (README, "Face embeddings").

    pairs = pair_evidence(records)            # {(i, j): Evidence} over any records
    groups = complete_linkage_groups(pairs)    # [[i, j, ...], ...]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from embeddings.graph import close_pairs, hamming

# Tuned on the dev set (bench/embeddings.py, 200 originals x 2 copies, 179,100 negative pairs):
# copies' descriptors are 0.02-0.37 apart (p99 0.25), different photos' 0.335 and more (p1 0.58);
# region hashes of copies 0-32 bits (median 8: resizing and cropping move the region), of
# different photos 8 and more. At 6 bits and 0.3 no false pair and 99.7 % of copies; at 8 bits
# 9 false pairs.
HASH_MAX_BITS = 6
SAME_SHOT_DISTANCE = 0.3
# A near-identical region must also be the same person to the descriptor. Copies are at most
# 0.37 apart (above; the bench's recall is the same with this test as without it), other photos
# of one person usually 0.3-0.6; of the 754 look-alike pairs of different people built from the
# dev set (bench/embeddings.py), the 105 within HASH_MAX_BITS are 0.593 and more apart. Without a descriptor (still being computed) the hash alone flags nothing.
NEAR_IDENTICAL_MAX_DISTANCE = 0.5
MAX_GROUP = 12


@dataclass
class FaceRecord:
    """What the tests read of one face."""

    face_id: int
    image_id: int
    sha256: str
    vector: np.ndarray | None = None  # flip-averaged descriptor
    phash: int | None = None
    phash_mirrored: int | None = None


@dataclass
class Evidence:
    """Why two faces are duplicates, with every distance whether it matched or not."""

    exact: bool = False
    hash_bits: int | None = None
    descriptor: float | None = None
    tests: list[str] = field(default_factory=list)

    @property
    def strength(self) -> float:
        """Lower is surer: exact first, then the smaller of the two normalised distances."""
        if self.exact:
            return -1.0
        scores = []
        if "near-identical image" in self.tests and self.hash_bits is not None:
            scores.append(self.hash_bits / 64)
        if self.descriptor is not None and self.descriptor < SAME_SHOT_DISTANCE:
            scores.append(self.descriptor)
        return min(scores) if scores else 1.0


def region_hash_distance(a: FaceRecord, b: FaceRecord) -> int | None:
    """Bits between the regions' hashes, the mirrored one included (None: a hash is missing)."""
    if a.phash is None or b.phash is None:
        return None
    distances = [hamming(a.phash, b.phash)]
    if b.phash_mirrored is not None:
        distances.append(hamming(a.phash, b.phash_mirrored))
    return min(distances)


def descriptor_distance(a: FaceRecord, b: FaceRecord) -> float | None:
    if a.vector is None or b.vector is None:
        return None
    return float(np.linalg.norm(np.asarray(a.vector, dtype=np.float32) - np.asarray(b.vector, dtype=np.float32)))


def evidence_of(
    a: FaceRecord, b: FaceRecord, *, hash_max_bits: int = HASH_MAX_BITS, same_shot: float = SAME_SHOT_DISTANCE
) -> Evidence:
    e = Evidence(
        exact=bool(a.sha256) and a.sha256 == b.sha256,
        hash_bits=region_hash_distance(a, b),
        descriptor=descriptor_distance(a, b),
    )
    if e.exact:
        e.tests.append("exact")
    if (
        e.hash_bits is not None
        and e.hash_bits <= hash_max_bits
        and e.descriptor is not None
        and e.descriptor < NEAR_IDENTICAL_MAX_DISTANCE
    ):
        e.tests.append("near-identical image")
    if e.descriptor is not None and e.descriptor < same_shot:
        e.tests.append("same shot")
    return e


def pair_evidence(
    records: list[FaceRecord], *, hash_max_bits: int = HASH_MAX_BITS, same_shot: float = SAME_SHOT_DISTANCE
) -> dict[tuple[int, int], Evidence]:
    """Every pair of faces of different photos that passes at least one test, keyed by
    (smaller face id, larger), with the evidence of all three tests."""
    by_id = {r.face_id: r for r in records}
    candidates: set[tuple[int, int]] = set()
    by_sha: dict[str, list[int]] = {}
    for r in records:
        if r.sha256:
            by_sha.setdefault(r.sha256, []).append(r.face_id)
    for ids in by_sha.values():
        candidates |= {(a, b) for i, a in enumerate(sorted(ids)) for b in sorted(ids)[i + 1 :]}
    candidates |= _descriptor_candidates(records, hash_max_bits=hash_max_bits, same_shot=same_shot)
    out = {}
    for a, b in sorted(candidates):
        ra, rb = by_id[a], by_id[b]
        if ra.image_id == rb.image_id:
            continue  # two faces of one photo are two people, never copies of each other
        e = evidence_of(ra, rb, hash_max_bits=hash_max_bits, same_shot=same_shot)
        if e.tests:
            out[(a, b)] = e
    return out


def _descriptor_candidates(records: list[FaceRecord], *, hash_max_bits: int, same_shot: float) -> set[tuple[int, int]]:
    """Pairs of faces that may pass "near-identical image" or "same shot": both need the
    descriptors closer than NEAR_IDENTICAL_MAX_DISTANCE (or same_shot), so the candidates are the
    descriptor graph's pairs within that radius (embeddings.graph: exact on small sets, the
    approximate k-nearest graph on large ones; a hash alone flags nothing), narrowed at once in
    numpy to those whose region hashes (either one mirrored) are within hash_max_bits or whose
    descriptors are within same_shot. evidence_of then decides each one."""
    with_vector = [r for r in records if r.vector is not None]
    if len(with_vector) < 2:
        return set()
    matrix = np.stack([r.vector for r in with_vector]).astype(np.float32)
    pairs = close_pairs(matrix, max(NEAR_IDENTICAL_MAX_DISTANCE, same_shot))
    if not len(pairs):
        return set()
    i, j, d = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64), pairs[:, 2]
    keep = d < same_shot
    has = np.array([r.phash is not None for r in with_vector])
    if has.any():
        phash = np.array([(r.phash or 0) & 0xFFFFFFFFFFFFFFFF for r in with_vector], dtype=np.uint64)
        mirrored = np.array(
            [
                ((r.phash if r.phash_mirrored is None else r.phash_mirrored) or 0) & 0xFFFFFFFFFFFFFFFF
                for r in with_vector
            ],
            dtype=np.uint64,
        )
        bits = np.minimum.reduce(
            [
                np.bitwise_count(phash[i] ^ phash[j]),
                np.bitwise_count(phash[i] ^ mirrored[j]),
                np.bitwise_count(mirrored[i] ^ phash[j]),
            ]
        )
        keep |= has[i] & has[j] & (bits <= hash_max_bits) & (d < NEAR_IDENTICAL_MAX_DISTANCE)
    ids = np.array([r.face_id for r in with_vector], dtype=np.int64)
    a, b = ids[i[keep]], ids[j[keep]]
    return set(zip(np.minimum(a, b).tolist(), np.maximum(a, b).tolist(), strict=True))


def complete_linkage_groups(pairs: dict[tuple[int, int], Evidence], *, max_size: int = MAX_GROUP) -> list[list[int]]:
    """Groups in which every two faces are a matched pair, at most `max_size` faces each: the
    surest pairs are merged first, and two groups merge only when all their cross pairs match.
    Sorted lists of face ids, largest group first; faces without a pair are in no group."""
    group_of: dict[int, int] = {}
    members: dict[int, list[int]] = {}
    for (a, b), _ in sorted(pairs.items(), key=lambda item: (item[1].strength, item[0])):
        ga, gb = group_of.setdefault(a, a), group_of.setdefault(b, b)
        members.setdefault(ga, [a])
        members.setdefault(gb, [b])
        if ga == gb or len(members[ga]) + len(members[gb]) > max_size:
            continue
        if all((min(x, y), max(x, y)) in pairs for x in members[ga] for y in members[gb]):
            for x in members[gb]:
                group_of[x] = ga
            members[ga] += members.pop(gb)
    groups = [sorted(m) for m in members.values() if len(m) > 1]
    return sorted(groups, key=lambda g: (-len(g), g[0]))
