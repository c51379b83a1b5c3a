"""Destructive actions in a real Chromium: an exclusion rule is previewed (count and sample) and
runs only on Confirm, a click that would change more than CURATOR_MAX_ACTION_SHARE of the dataset
needs a second, explicit confirmation (rule form and the grid's "all matching"), and a revert
lists what it will change, old -> new, before it acts."""

import pytest

from curator.models import Face
from labeling import services
from labeling.models import BulkAction
from tests.labeling.factories import make_faces

pytestmark = pytest.mark.browser


@pytest.fixture
def faces(dataset):
    # Sizes are 40 + (7i mod 160) px: 6 of the 40 faces are below 60 px, 32 below 150 px.
    return make_faces(dataset, 40, labels=["female", "male"])


def test_rule_preview_shows_what_confirm_then_excludes(transactional_db, new_page, alice, dataset, faces):
    page = new_page(alice)
    page.goto(f"/labeling/{dataset.pk}/curate/")
    page.fill("#rule-form input[name=min_size_px]", "60")
    page.click("#rule-form button[type=submit]")
    page.wait_for_selector("#rule-preview")
    text = page.locator("#preview-count").inner_text()
    shown = int(text.split("This excludes ")[1].split(" ")[0])
    assert shown == 6 and "15.0 % of the dataset" in text
    assert page.locator("#preview-sample img").count() == 6
    assert page.locator("#confirm-large").count() == 0  # under the share: one confirm is enough
    assert not Face.objects.filter(is_excluded=True).exists() and not BulkAction.objects.exists()

    page.click("#confirm-action")
    page.wait_for_selector(".msg-success")
    assert f"Rule applied: {shown} face(s) excluded" in page.locator(".messages").inner_text()
    assert Face.objects.filter(is_excluded=True).count() == shown


def test_a_rule_over_the_share_needs_the_second_confirmation(transactional_db, new_page, alice, dataset, faces):
    page = new_page(alice)
    page.goto(f"/labeling/{dataset.pk}/curate/")
    page.fill("#rule-form input[name=min_size_px]", "150")
    page.click("#rule-form button[type=submit]")
    page.wait_for_selector("#rule-preview")
    assert "I understand this excludes 32 faces (80.0 %)" in page.locator("#confirm-form").inner_text()
    # Confirm alone does nothing: the checkbox is required.
    page.click("#confirm-action")
    page.wait_for_timeout(300)
    assert page.locator("#rule-preview").count() == 1 and not Face.objects.filter(is_excluded=True).exists()
    page.check("#confirm-large")
    page.click("#confirm-action")
    page.wait_for_selector(".msg-success")
    assert Face.objects.filter(is_excluded=True).count() == 32


def test_grid_all_matching_previews_and_needs_the_second_confirmation(
    transactional_db, new_page, alice, dataset, faces
):
    page = new_page(alice)
    page.goto(f"/labeling/{dataset.pk}/?label=male&panels=open")
    page.wait_for_selector(".tile.focused")
    page.click("#select-all-matching")
    page.click("button[data-bulk=exclude]")
    page.wait_for_selector("#bulk-preview")
    assert (
        "This changes 20 of the 20 matching faces, 50.0 % of the dataset"
        in page.locator("#bulk-preview-count").inner_text()
    )
    assert page.locator("#bulk-preview .sample img").count() == 20
    assert page.locator("#bulk-confirm").is_disabled()
    assert not Face.objects.filter(is_excluded=True).exists()
    # Cancel leaves everything as it was.
    page.click("#bulk-cancel")
    assert page.locator("#bulk-preview").count() == 0 and not BulkAction.objects.exists()

    page.click("button[data-bulk=exclude]")
    page.wait_for_selector("#bulk-preview")
    page.keyboard.press("m")  # a labeling key while the preview is open labels nothing
    page.check("#bulk-confirm-large")
    page.click("#bulk-confirm")
    page.wait_for_selector(".msg-success")
    assert "20 faces changed" in page.locator(".messages").inner_text()
    assert set(Face.objects.filter(is_excluded=True).values_list("label", flat=True)) == {"male"}
    assert Face.objects.filter(is_excluded=True).count() == 20 and BulkAction.objects.count() == 1


def test_grid_all_matching_under_the_share_needs_one_confirm(transactional_db, new_page, bob, dataset, faces):
    small = {f.pk for f in faces if f.size_px < 60}
    page = new_page(bob)
    page.goto(f"/labeling/{dataset.pk}/?max_size=59&panels=open")
    page.wait_for_selector(".tile.focused")
    page.click("#select-all-matching")
    page.select_option("#bulk-split", "test")
    page.click("button[data-bulk=split]")
    page.wait_for_selector("#bulk-preview")
    assert page.locator("#bulk-confirm-large").count() == 0 and page.locator("#bulk-confirm").is_enabled()
    page.click("#bulk-confirm")
    page.wait_for_selector(".msg-success")
    assert set(Face.objects.filter(split="test").values_list("id", flat=True)) == small


def test_revert_preview_lists_old_and_new_values_then_reverts(transactional_db, new_page, alice, bob, dataset, faces):
    males = [f.pk for f in faces[:6] if f.label == "male"]
    action = services.faces_update(user=alice, dataset=dataset, faces=males, changes={"label": "female"})
    services.faces_update(user=bob, dataset=dataset, faces=[males[0]], changes={"is_unsure": True})
    services.faces_update(user=bob, dataset=dataset, faces=[males[1]], changes={"label": "male"})
    page = new_page(alice)
    page.goto(f"/labeling/{dataset.pk}/history/")
    row = page.locator(f"#action-{action.pk}")
    assert "label: male → female (3 faces)" in row.inner_text()
    assert row.locator("img").count() == 3
    row.locator("a.button").click()
    page.wait_for_selector("#revert-changes")
    changes = page.locator("#revert-changes").inner_text()
    assert changes.count("label: female → male") == 2  # the two faces without a later change
    assert page.locator("#revert-changes img").count() == 2
    assert "label: this action set female, now male" in page.locator("#revert-conflicts").inner_text()
    assert set(Face.objects.filter(pk__in=males).values_list("label", flat=True)) == {"female", "male"}
    page.click("#confirm-revert")
    page.wait_for_selector(".messages")
    assert "2 face(s) restored" in page.locator(".messages").inner_text()
    assert set(Face.objects.filter(pk__in=males).values_list("label", flat=True)) == {"male"}


def test_keep_one_previews_and_confirms(transactional_db, new_page, alice, dataset, faces):
    """Duplicates page (embeddings): "Keep this one" shows the faces it will exclude, changes
    nothing until Confirm, and then excludes exactly those."""
    from tests.embeddings.factories import descriptors_store, duplicates_compute_now, far_apart_vectors, near

    vectors = far_apart_vectors(len(faces))
    vectors[1], vectors[2] = near(vectors[0], 0.02), near(vectors[0], 0.03, axis=1)  # one shot, three files
    descriptors_store(faces, vectors=vectors)
    duplicates_compute_now(dataset)  # as the embed worker stores them
    page = new_page(alice)
    page.goto(f"/labeling/{dataset.pk}/duplicates/")
    assert "1 group of near-duplicate faces" in page.locator("#dup-count").inner_text()
    assert "same shot" in page.locator(".dup-pairs").inner_text()
    page.locator(".dup-group .keep-one").first.click()
    page.wait_for_selector("#keep-preview")
    assert "This excludes 2 faces" in page.locator("#preview-count").inner_text()
    assert page.locator("#preview-sample img").count() == 2
    assert page.locator("#confirm-large").count() == 0  # 2 of 40 faces: under the share
    assert not Face.objects.filter(is_excluded=True).exists() and not BulkAction.objects.exists()
    page.click("#confirm-action")
    page.wait_for_selector(".msg-success")
    assert f"Kept face {faces[0].pk}; excluded 2 duplicate(s)." in page.locator(".messages").inner_text()
    assert set(Face.objects.filter(is_excluded=True).values_list("pk", flat=True)) == {faces[1].pk, faces[2].pk}
