"""The identities page: clusters by size with sample faces, labels and known names; the grid's
`identity=` filter; "same person" (merge) and "these are different people" (split), which are
for curators only, recorded in the history and revertable there, kept when the clusters are
computed again, and respected by identity-aware splits and the leakage count."""

import numpy as np
import pytest
from django.test import Client

from curator.models import Face
from embeddings import selectors as embeddings_selectors
from embeddings.models import FaceIdentity, IdentityDecision
from embeddings.selectors import identity_leakage
from embeddings.services import identity_clusters_update
from labeling import selectors, services
from labeling.filters import face_filter
from labeling.models import BulkAction
from tests.embeddings.factories import descriptors_store, far_apart_vectors
from tests.labeling.factories import make_faces

PER = 4  # faces per person


def person_vectors(sizes: list[int], *, seed: int = 0) -> np.ndarray:
    """sizes[i] faces of person i, 0.25 from their person's centre (~1.4 between people)."""
    rng = np.random.default_rng(seed)
    centres = far_apart_vectors(len(sizes), seed=seed)
    out = []
    for centre, n in zip(centres, sizes, strict=True):
        for _ in range(n):
            noise = rng.normal(size=128).astype(np.float32)
            out.append(centre + 0.25 * noise / np.linalg.norm(noise))
    return np.stack(out)


def cluster_of(face) -> int:
    return FaceIdentity.objects.get(face_id=face.pk).cluster


@pytest.fixture
def people(dataset):
    """Five people without names (clusters of 5, 4, 3, 2 and 1 faces, from the descriptors) and
    two photos naming "Ann_Lee" (a known cluster). Returns {person index: [faces]}."""
    sizes = [5, 4, 3, 2, 1]
    n = sum(sizes)
    faces = make_faces(dataset, n, labels=["female", "male"], metadata=[{}] * n)
    named = make_faces(dataset, 2, start=n, labels=["female"], metadata=[{"identity": "Ann_Lee"}] * 2)
    descriptors_store(faces + named, vectors=np.concatenate([person_vectors(sizes), far_apart_vectors(2, seed=9)]))
    identity_clusters_update(dataset_id=dataset.pk)
    out, i = {}, 0
    for p, size in enumerate(sizes):
        out[p] = faces[i : i + size]
        i += size
    out["ann"] = named
    return out


def test_clusters_ordered_by_size_with_labels_names_and_samples(dataset, people):
    page = selectors.identity_clusters_page(dataset=dataset, offset=0, limit=10)
    assert [c["size"] for c in page] == [5, 4, 3, 2, 2, 1]
    biggest = page[0]
    assert biggest["cluster"] == cluster_of(people[0][0])
    assert dict(biggest["labels"]) == {"female": 3, "male": 2}
    assert not biggest["known"] and len(biggest["faces"]) == 5
    ann = next(c for c in page if c["cluster"] == cluster_of(people["ann"][0]))
    assert ann["known"] and ann["names"] == ["Ann_Lee"]
    summary = selectors.identity_summary(dataset=dataset)
    assert summary == {"clusters": 6, "faces": 17, "single": 1, "known": 1, "decisions": 0}
    # Bounded pages: the second page of two clusters starts where the first ended.
    assert [c["size"] for c in selectors.identity_clusters_page(dataset=dataset, offset=2, limit=2)] == [3, 2]
    assert [c["size"] for c in selectors.identity_clusters_page(dataset=dataset, offset=0, limit=9, min_size=3)] == [
        5,
        4,
        3,
    ]


def test_the_page_shows_clusters_and_links_to_the_grid(bob_client, dataset, people):
    response = bob_client.get(f"/labeling/{dataset.pk}/identities/")
    body = response.content.decode()
    assert response.status_code == 200
    big = cluster_of(people[0][0])
    assert f'href="/labeling/{dataset.pk}/?identity={big}"' in body
    assert "known: Ann_Lee" in body and "computed cluster" in body
    assert body.index(f'id="cluster-{big}"') < body.index(f'id="cluster-{cluster_of(people[4][0])}"')
    assert 'src="/static/labeling/identities.js"' in body and "<script>" not in body
    # bob annotates: he sees the clusters but no merge button.
    assert 'id="merge-clusters"' not in body
    assert bob_client.get(f"/labeling/{dataset.pk}/identities/?page=9").status_code == 404
    assert bob_client.get(f"/labeling/{dataset.pk}/identities/?min_size=x").status_code == 400
    page = bob_client.get(f"/labeling/{dataset.pk}/identities/{big}/").content.decode()
    assert all(f'data-face="{f.pk}"' in page for f in people[0]) and 'id="split-cluster"' not in page


def test_grid_and_api_filter_by_identity_with_exact_counts(alice_client, dataset, people):
    big = cluster_of(people[0][0])
    flt = face_filter(dataset=dataset, params={"identity": str(big)})
    assert flt.errors == [] and flt.matching.count() == 5
    assert set(flt.matching.values_list("pk", flat=True)) == {f.pk for f in people[0]}
    assert "of identity cluster" in " ".join(flt.description)
    # Combined with another filter: the counts stay exact.
    assert face_filter(dataset=dataset, params={"identity": str(big), "label": "male"}).matching.count() == 2
    grid = alice_client.get(f"/labeling/{dataset.pk}/?identity={big}")
    assert grid.status_code == 200 and grid.content.decode().count('class="tile') >= 5
    api = alice_client.get(f"/api/v1/datasets/{dataset.pk}/faces/?identity={big}").json()
    assert api["count"] == 5
    unknown = face_filter(dataset=dataset, params={"identity": "99999"})
    assert unknown.errors and "not a cluster of this dataset" in unknown.errors[0]
    assert alice_client.get(f"/labeling/{dataset.pk}/?identity=99999").status_code == 400


def test_merge_joins_clusters_records_history_and_reverts(alice, alice_client, dataset, people):
    a, b = cluster_of(people[2][0]), cluster_of(people[3][0])
    response = alice_client.post(f"/labeling/{dataset.pk}/identities/merge/", {"cluster": [a, b]})
    assert response.status_code == 302
    into = min(a, b)
    assert {cluster_of(f) for f in people[2] + people[3]} == {into}
    action = BulkAction.objects.get(dataset=dataset, kind=BulkAction.Kind.SAME_PERSON)
    assert action.user == alice and action.face_count == (2 if into == a else 3)
    assert selectors.action_params_words(action).startswith(f"identity clusters {', '.join(map(str, sorted([a, b])))}")
    history = alice_client.get(f"/labeling/{dataset.pk}/history/").content.decode()
    row = history[history.index(f'<tr id="action-{action.pk}">') :]
    row = row[: row.index("</tr>")]
    assert "Same person" in row and "identity cluster: changed" in row and row.count("<img") == 5
    assert f"/labeling/{dataset.pk}/history/{action.pk}/revert/" in row
    preview = alice_client.get(f"/labeling/{dataset.pk}/history/{action.pk}/revert/").content.decode()
    assert "will change identity cluster" in preview
    alice_client.post(f"/labeling/{dataset.pk}/history/{action.pk}/revert/")
    assert cluster_of(people[2][0]) != cluster_of(people[3][0])
    assert not IdentityDecision.objects.get().active
    revert = BulkAction.objects.get(reverts=action)
    # Reverting the revert applies the decision again.
    services.bulk_action_revert(user=alice, action=revert)
    assert cluster_of(people[2][0]) == cluster_of(people[3][0])


def test_split_takes_picked_faces_to_a_cluster_of_their_own(alice, alice_client, dataset, people):
    big = cluster_of(people[0][0])
    picked = [f.pk for f in people[0][:2]]
    response = alice_client.post(f"/labeling/{dataset.pk}/identities/{big}/split/", {"face": picked})
    assert response.status_code == 302
    new = cluster_of(people[0][0])
    assert new != big and cluster_of(people[0][1]) == new
    assert {cluster_of(f) for f in people[0][2:]} == {big}
    action = BulkAction.objects.get(kind=BulkAction.Kind.DIFFERENT_PEOPLE)
    assert action.face_count == 2 and action.params["new_cluster"] == new
    assert "2 faces of identity cluster" in selectors.action_params_words(action)
    services.bulk_action_revert(user=alice, action=action)
    assert {cluster_of(f) for f in people[0]} == {big}


def test_split_and_merge_refuse_what_makes_no_sense(alice, dataset, people):
    big, other = cluster_of(people[0][0]), cluster_of(people[1][0])
    with pytest.raises(services.InvalidChange, match="all the faces"):
        services.identities_split(user=alice, dataset=dataset, cluster=big, faces=[f.pk for f in people[0]])
    with pytest.raises(services.InvalidChange, match="not in cluster"):
        services.identities_split(user=alice, dataset=dataset, cluster=big, faces=[people[1][0].pk])
    with pytest.raises(services.InvalidChange, match="Pick the faces"):
        services.identities_split(user=alice, dataset=dataset, cluster=big, faces=[])
    with pytest.raises(services.InvalidChange, match="two or more"):
        services.identities_merge(user=alice, dataset=dataset, clusters=[big])
    with pytest.raises(services.InvalidChange, match="not a cluster"):
        services.identities_merge(user=alice, dataset=dataset, clusters=[big, 99999])
    with pytest.raises(services.InvalidChange, match="whole numbers"):
        services.identities_merge(user=alice, dataset=dataset, clusters=[big, "x"])
    assert not IdentityDecision.objects.exists() and cluster_of(people[1][0]) == other
    assert not BulkAction.objects.exists()


def test_decisions_survive_a_recomputation_of_the_clusters(alice, dataset, people):
    services.identities_merge(
        user=alice, dataset=dataset, clusters=[cluster_of(people[2][0]), cluster_of(people[3][0])]
    )
    services.identities_split(user=alice, dataset=dataset, cluster=cluster_of(people[0][0]), faces=[people[0][0].pk])
    # New faces arrive: the descriptors change and the clusters are computed again from scratch.
    newcomers = make_faces(dataset, 2, start=40, metadata=[{}] * 2)
    descriptors_store(newcomers, vectors=far_apart_vectors(2, seed=5))
    assert identity_clusters_update(dataset_id=dataset.pk) > 0
    assert cluster_of(people[2][0]) == cluster_of(people[3][1])
    assert cluster_of(people[0][0]) != cluster_of(people[0][1])
    assert len({cluster_of(f) for f in people[0][1:]}) == 1
    assert FaceIdentity.objects.filter(face__in=newcomers).count() == 2


def test_identity_aware_splits_keep_a_merged_identity_on_one_side(alice, dataset):
    """Twelve people of 3 faces each; the curator says people 0-3 are one person (12 faces):
    every split keeps those 12 together."""
    faces = make_faces(dataset, 36, labels=["female", "male"], metadata=[{}] * 36)
    descriptors_store(faces, vectors=person_vectors([3] * 12))
    identity_clusters_update(dataset_id=dataset.pk)
    merged = faces[:12]
    services.identities_merge(user=alice, dataset=dataset, clusters={cluster_of(f) for f in merged})
    for seed in range(4):
        services.splits_assign(user=alice, dataset=dataset, seed=seed)
        splits = dict(Face.objects.filter(dataset=dataset).values_list("pk", "split"))
        assert len({splits[f.pk] for f in merged}) == 1, seed
        assert {"train", "test"} <= set(splits.values())


def test_a_split_named_identity_may_land_on_both_sides(alice, dataset):
    """Two photos name the same person but the curator says one is someone else: the metadata
    name no longer ties them (the cluster does), so splits may separate them."""
    faces = make_faces(dataset, 2, metadata=[{"identity": "Bo"}, {"identity": "Bo"}])
    descriptors_store(faces)
    identity_clusters_update(dataset_id=dataset.pk)
    groups = selectors.face_groups_for_split(
        dataset=dataset, face_ids={f.pk for f in faces}, duplicate_distance=0
    ).groups
    assert len(groups) == 1
    services.identities_split(user=alice, dataset=dataset, cluster=cluster_of(faces[0]), faces=[faces[1].pk])
    groups = selectors.face_groups_for_split(
        dataset=dataset, face_ids={f.pk for f in faces}, duplicate_distance=0
    ).groups
    assert len(groups) == 2


def test_the_leakage_count_follows_merges_and_splits(alice, dataset, people):
    train = [people[0][0].pk, people[2][0].pk]
    test = [people[0][1].pk, people[3][0].pk, people[1][0].pk]
    assert identity_leakage(train_ids=train, test_ids=test)["leaked"] == 1  # person 0
    merge = services.identities_merge(
        user=alice, dataset=dataset, clusters=[cluster_of(people[2][0]), cluster_of(people[3][0])]
    )
    assert identity_leakage(train_ids=train, test_ids=test)["leaked"] == 2  # and now 2 = 3
    services.identities_split(user=alice, dataset=dataset, cluster=cluster_of(people[0][0]), faces=[people[0][1].pk])
    assert identity_leakage(train_ids=train, test_ids=test)["leaked"] == 1  # face 0/1 is someone else
    services.bulk_action_revert(user=alice, action=merge)
    assert identity_leakage(train_ids=train, test_ids=test)["leaked"] == 0


def test_only_curators_merge_or_split(bob_client, charlie_client, dataset, people):
    big = cluster_of(people[0][0])
    merge = {"cluster": [big, cluster_of(people[1][0])]}
    assert bob_client.post(f"/labeling/{dataset.pk}/identities/merge/", merge).status_code == 403
    split = {"face": [people[0][0].pk]}
    assert bob_client.post(f"/labeling/{dataset.pk}/identities/{big}/split/", split).status_code == 403
    assert charlie_client.post(f"/labeling/{dataset.pk}/identities/merge/", merge).status_code == 404
    assert charlie_client.get(f"/labeling/{dataset.pk}/identities/").status_code == 404
    assert Client().get(f"/labeling/{dataset.pk}/identities/").status_code == 302
    assert bob_client.get(f"/labeling/{dataset.pk}/identities/merge/").status_code == 405
    assert not IdentityDecision.objects.exists()


def test_merge_needs_the_csrf_token(alice, dataset, people):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    merge = {"cluster": [cluster_of(people[0][0]), cluster_of(people[1][0])]}
    assert client.post(f"/labeling/{dataset.pk}/identities/merge/", merge).status_code == 403
    assert not IdentityDecision.objects.exists()


def test_z_on_the_grid_does_not_undo_a_merge(alice, dataset, people):
    services.faces_update(user=alice, dataset=dataset, faces=[people[4][0].pk], changes={"label": "male"})
    merge = services.identities_merge(
        user=alice, dataset=dataset, clusters=[cluster_of(people[2][0]), cluster_of(people[3][0])]
    )
    undone = services.bulk_action_undo_last(user=alice, dataset=dataset)
    assert undone.action.reverts.kind == BulkAction.Kind.LABEL
    assert not merge.reverted_by.exists()


def test_the_face_page_and_the_dataset_page_link_the_identities(bob_client, dataset, people):
    big = cluster_of(people[0][0])
    face_page = bob_client.get(f"/datasets/{dataset.pk}/faces/{people[0][0].pk}/").content.decode()
    assert f'href="/labeling/{dataset.pk}/identities/{big}/" id="face-identity"' in face_page
    named = bob_client.get(f"/datasets/{dataset.pk}/faces/{people['ann'][0].pk}/").content.decode()
    assert "(Ann_Lee)" in named
    assert f'href="/labeling/{dataset.pk}/identities/"' in bob_client.get(f"/datasets/{dataset.pk}/").content.decode()


@pytest.mark.parametrize("value", ["99999999999999999999999", "-1", "x", "1.5"])
def test_nonsense_cluster_numbers_are_400_or_404_never_500(alice_client, dataset, people, value):
    assert alice_client.get(f"/labeling/{dataset.pk}/?identity={value}").status_code == 400
    assert alice_client.get(f"/api/v1/datasets/{dataset.pk}/faces/?identity={value}").status_code == 400
    merge = alice_client.post(f"/labeling/{dataset.pk}/identities/merge/", {"cluster": [value, "0"]})
    assert merge.status_code == 302 and not IdentityDecision.objects.exists()


@pytest.mark.parametrize("value", ["١", "²", str(2**70), "1_0"])
def test_merge_and_split_read_cluster_and_face_numbers_as_ascii_digits_only(alice, dataset, people, value):
    big = cluster_of(people[0][0])
    with pytest.raises(services.InvalidChange, match="whole numbers"):
        services.identities_merge(user=alice, dataset=dataset, clusters=[big, value])
    with pytest.raises(services.InvalidChange, match="whole numbers"):
        services.identities_split(user=alice, dataset=dataset, cluster=big, faces=[value])
    assert not IdentityDecision.objects.exists()


def test_a_cluster_number_too_big_for_the_database_is_a_message_not_a_500(alice_client, dataset, people):
    response = alice_client.get(f"/labeling/{dataset.pk}/identities/99999999999999999999999/")
    assert response.status_code == 302
    split = alice_client.post(f"/labeling/{dataset.pk}/identities/99999999999999999999999/split/", {"face": ["1"]})
    assert split.status_code == 302 and not IdentityDecision.objects.exists()


def test_an_implausibly_large_computed_cluster_is_not_kept_whole_by_splits(alice, dataset, monkeypatch):
    """Chinese whispers can chain many different people into one cluster (on the dev set: 320
    children). A cluster from the descriptors alone larger than PERSON_CLUSTER_FLOOR (4 here) and 1 %
    of the faces is not one group; the action says so. A cluster of the same size that the photos
    name, or that a curator merged, stays whole."""
    monkeypatch.setattr(embeddings_selectors, "PERSON_CLUSTER_FLOOR", 4)
    sizes = [12, 6, 3, 3, 1, 1, 1, 1]  # the chained cluster, the named person, two people merged
    n = sum(sizes)
    metadata = [{}] * 12 + [{"identity": "Ann_Lee"}] * 6 + [{}] * 10
    faces = make_faces(dataset, n, labels=["female", "male"], metadata=metadata)
    descriptors_store(faces, vectors=person_vectors(sizes))
    identity_clusters_update(dataset_id=dataset.pk)
    chained, named, merged = faces[:12], faces[12:18], faces[18:24]
    services.identities_merge(user=alice, dataset=dataset, clusters={cluster_of(merged[0]), cluster_of(merged[3])})

    grouping = selectors.face_groups_for_split(dataset=dataset, face_ids={f.pk for f in faces}, duplicate_distance=0)
    group_of = {f: tuple(g) for g in grouping.groups for f in g}
    assert len({group_of[f.pk] for f in chained}) == 12  # each face on its own
    assert len({group_of[f.pk] for f in named}) == 1
    assert len({group_of[f.pk] for f in merged}) == 1
    assert grouping.clusters_not_kept == [12]
    action = services.splits_assign(user=alice, dataset=dataset, seed=0)
    assert action.params["identity_clusters_not_kept"] == [12]
    assert "too large to be one person not kept whole (12 faces)" in selectors.action_params_words(action)

    # Under the cap (the default floor of 20 faces) the same cluster is one group again.
    monkeypatch.setattr(embeddings_selectors, "PERSON_CLUSTER_FLOOR", 20)
    grouping = selectors.face_groups_for_split(dataset=dataset, face_ids={f.pk for f in faces}, duplicate_distance=0)
    assert grouping.clusters_not_kept == []
    assert len({f for g in grouping.groups for f in g if f in {c.pk for c in chained}}) == 12
    assert any({c.pk for c in chained} <= set(g) for g in grouping.groups)
