"""Near-duplicates: the three tests of a pair, groups without chaining, the page's evidence,
"keep this one" (checked again, previewed), and precision/recall on a labelled set built from
the fixture faces with real dlib (the dev-data version is bench/embeddings.py)."""

import random

import pytest

from curator.models import Face
from embeddings import dupset
from embeddings.duplicates import Evidence, FaceRecord, complete_linkage_groups, evidence_of, pair_evidence
from embeddings.graph import hash_pairs
from labeling import selectors, services
from tests.embeddings.factories import descriptors_store, duplicates_compute_now, far_apart_vectors, near
from tests.labeling.factories import make_faces


def test_hash_pairs_match_brute_force():
    rng = random.Random(3)
    base = [rng.getrandbits(64) for _ in range(60)]
    hashes = base + [h ^ (1 << rng.randrange(64)) ^ (1 << rng.randrange(64)) for h in base[:20]]
    ids = list(range(len(hashes)))
    for d in (0, 2, 6, 10):
        brute = sorted((i, j) for i in ids for j in ids if i < j and bin(hashes[i] ^ hashes[j]).count("1") <= d)
        assert hash_pairs(ids, [h - (1 << 64) if h >= 1 << 63 else h for h in hashes], d) == brute


def test_a_chain_of_look_alikes_is_not_one_group():
    """a~b, b~c, c~d but a and c, b and d, a and d do not match: connected components would make
    one group of four (the bug of the old page); complete linkage makes pairs."""
    pairs = {(1, 2): Evidence(descriptor=0.1, tests=["same shot"])}
    pairs[(2, 3)] = Evidence(descriptor=0.2, tests=["same shot"])
    pairs[(3, 4)] = Evidence(descriptor=0.15, tests=["same shot"])
    assert complete_linkage_groups(pairs) == [[1, 2], [3, 4]]
    # A clique stays one group, and the size cap holds.
    clique = {(a, b): Evidence(descriptor=0.1, tests=["same shot"]) for a in range(10) for b in range(a + 1, 10)}
    assert complete_linkage_groups(clique) == [list(range(10))]
    assert [len(g) for g in complete_linkage_groups(clique, max_size=4)] == [4, 4, 2]


def test_pair_evidence_tests_and_faces_of_one_photo():
    v = far_apart_vectors(4)
    records = [
        FaceRecord(1, 10, "a", v[0], 0b1111, 0b0),
        FaceRecord(2, 11, "b", near(v[0], 0.05), None, None),  # same shot as 1
        FaceRecord(3, 12, "c", near(v[0], 0.4), 0b1111 ^ 0b11, 0),  # near-identical region as 1 (2 bits)
        FaceRecord(4, 13, "a", v[3], None, None),  # the same file as 1
        FaceRecord(5, 10, "a", v[0], 0b1111, 0),  # another face of photo 10: never a duplicate of 1
    ]
    pairs = pair_evidence(records)
    assert pairs[(1, 2)].tests == ["same shot"] and pairs[(1, 2)].descriptor < 0.1
    assert pairs[(1, 3)].tests == ["near-identical image"] and pairs[(1, 3)].hash_bits == 2
    assert "exact" in pairs[(1, 4)].tests
    assert (1, 5) not in pairs
    # The mirrored region counts: b's mirror hash equals a's hash.
    flipped = pair_evidence([FaceRecord(1, 1, "", v[0], 0xF0F0, 0x0F0F), FaceRecord(2, 2, "", v[0], 0x0F0F, 0xF0F0)])
    assert flipped[(1, 2)].hash_bits == 0


def test_a_near_identical_region_needs_the_descriptor_to_agree():
    """Issue 20: faces #155 and #170, two different men, were 6 bits apart by region hash and
    0.716 by descriptor, and the page called them a "near-identical image"."""
    v = far_apart_vectors(2)
    man = FaceRecord(155, 1, "a", v[0], 0b111111, 0)
    other_man = FaceRecord(170, 2, "b", near(v[0], 0.716), 0, 0)
    assert evidence_of(man, other_man).hash_bits == 6
    assert evidence_of(man, other_man).tests == []
    assert pair_evidence([man, other_man]) == {}
    # The same region with a descriptor that agrees (a re-encoded copy): flagged.
    copy = FaceRecord(171, 3, "c", near(v[0], 0.4), 0, 0)
    assert evidence_of(man, copy).tests == ["near-identical image"]
    # A region without a descriptor yet: the hash alone flags nothing.
    pending = FaceRecord(172, 4, "d", None, 0b111111, 0)
    assert evidence_of(man, pending).tests == []


def test_lookalike_pairs_are_the_closest_regions_of_surely_different_people():
    people = [
        dupset.Person("Ann_A", "female", "", "LFW"),
        dupset.Person("Ann_A", "female", "", "LFW"),  # the same person: never a look-alike pair
        dupset.Person("", "female", "white", "UTKFace"),
        dupset.Person("", "female", "white", "UTKFace"),  # may be the same person as 2: left out
        dupset.Person("", "male", "white", "UTKFace"),
    ]
    hashes = [0, 0, 0b1, 0b11, 0b111]
    records = [FaceRecord(i, i, str(i), None, h, None) for i, h in enumerate(hashes)]
    assert dupset.lookalike_pairs(people, records, count=3) == [(0, 2), (1, 2), (3, 4)]  # 1 bit each
    pairs = dupset.lookalike_pairs(people, records, count=4)  # the pairs tied with the 4th come too
    assert (0, 1) not in pairs and (2, 3) not in pairs
    assert pairs == [(0, 2), (1, 2), (3, 4), (0, 3), (1, 3), (2, 4)]  # then 2 bits each


def test_page_groups_show_each_pair_and_keep_one_previews(alice, alice_client, dataset):
    faces = make_faces(dataset, 8, labels=["female", "male"])
    v = far_apart_vectors(8)
    v[1], v[2] = near(v[0], 0.02), near(v[0], 0.04, axis=1)  # 0, 1, 2: the same shot
    v[4] = near(v[3], 0.05)  # 3, 4: a pair
    descriptors_store(faces, vectors=v)
    duplicates_compute_now(dataset)
    groups = selectors.duplicate_groups(dataset=dataset)
    assert [[f.pk for f in g["faces"]] for g in groups] == [[f.pk for f in faces[:3]], [faces[3].pk, faces[4].pk]]
    assert len(groups[0]["pairs"]) == 3 and groups[0]["pairs"][0]["tests"] == ["same shot"]
    body = alice_client.get(f"/labeling/{dataset.pk}/duplicates/").content.decode()
    assert "same shot" in body and "region hash" in body

    ids = ",".join(str(f.pk) for f in faces[:3])
    preview = alice_client.get(f"/labeling/{dataset.pk}/duplicates/keep/preview/", {"keep": faces[0].pk, "faces": ids})
    body = preview.content.decode()
    assert "This excludes <b>2</b> faces" in body and f"face {faces[2].pk}" in body
    assert not Face.objects.filter(is_excluded=True).exists()  # a preview changes nothing
    # 2 of 8 faces is over the 20 % share: the confirm needs the second checkbox.
    assert 'id="confirm-large"' in body
    response = alice_client.post(
        f"/labeling/{dataset.pk}/duplicates/keep/", {"keep": faces[0].pk, "faces": ids, "confirm": "1"}, follow=True
    )
    assert "confirm again" in response.content.decode()
    assert not Face.objects.filter(is_excluded=True).exists()
    response = alice_client.post(
        f"/labeling/{dataset.pk}/duplicates/keep/",
        {"keep": faces[0].pk, "faces": ids, "confirm": "1", "confirm_large": "1"},
        follow=True,
    )
    assert f"Kept face {faces[0].pk}; excluded 2 duplicate(s)." in response.content.decode()
    assert set(Face.objects.filter(is_excluded=True).values_list("pk", flat=True)) == {faces[1].pk, faces[2].pk}


def test_keep_one_refuses_faces_that_are_not_duplicates_of_the_kept_one(alice, dataset):
    faces = make_faces(dataset, 4)
    v = far_apart_vectors(4)
    v[1] = near(v[0], 0.02)
    descriptors_store(faces, vectors=v)
    with pytest.raises(services.InvalidChange, match=f"{faces[2].pk} is not a near-duplicate of face {faces[0].pk}"):
        services.duplicates_keep_one(
            user=alice, dataset=dataset, keep=faces[0].pk, faces=[faces[0].pk, faces[1].pk, faces[2].pk]
        )
    with pytest.raises(services.InvalidChange, match="not in this group"):
        services.duplicates_keep_one(user=alice, dataset=dataset, keep=faces[3].pk, faces=[faces[0].pk, faces[1].pk])
    assert not Face.objects.filter(is_excluded=True).exists()


@pytest.mark.slow
def test_precision_and_recall_on_a_set_built_from_the_fixture_faces(fixture_faces):
    """Every fixture face with one augmented copy (kinds in turn: JPEG 40-70, resize, crop, flip,
    brightness, combined): copies must be found, different people must not be grouped."""
    paths = sorted((fixture_faces / "lfw").glob("*/*.jpg")) + sorted((fixture_faces / "utkface").glob("*.jpg"))[::2]
    items = dupset.build_items(paths, copies=1, seed=0)
    records = dupset.items_records(items)
    assert sum(r.vector is not None for r in records) == len(items)
    precision, recall, detail = dupset.measure(items, records)
    assert precision >= 0.98, detail
    assert recall >= 0.95, detail
    # Flipped copies are duplicates too (they leak the same face into train and test).
    assert not any("flip" in kind for kind in detail["missed_by_kind"]), detail
