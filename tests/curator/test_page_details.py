"""Small things every page gets right: a favicon (no 404), one message for a failed login, the
admin's plural of import batch, what "waiting" waits for, and help for the alignment options."""

from django.contrib.admin.sites import site
from django.test import Client

from curator.forms import DatasetForm
from curator.models import ImportBatch


def test_favicon_is_linked_and_served(alice_client):
    page = alice_client.get("/").content.decode()
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in page
    # Pages that name no icon (the admin's) ask for /favicon.ico: a redirect, no login needed.
    response = Client().get("/favicon.ico")
    assert response.status_code == 301 and response["Location"] == "/static/favicon.svg"


def test_a_failed_login_says_so_once(db):
    response = Client().post("/accounts/login/", {"username": "nobody", "password": "wrong"})
    html = response.content.decode()
    assert html.count("Please enter a correct username and password") == 1
    assert 'id="login-error"' in html


def test_admin_says_import_batches():
    assert ImportBatch._meta.verbose_name_plural == "import batches"
    assert ImportBatch in site._registry


def test_waiting_is_explained(alice_client, dataset):
    listing = alice_client.get("/").content.decode()
    assert "Waiting to be aligned" in listing
    assert "wait for an alignment worker" in listing
    detail = alice_client.get(f"/datasets/{dataset.pk}/").content.decode()
    assert "waiting to be aligned" in detail


def test_alignment_options_have_help():
    form = DatasetForm()
    for name in ("upsample", "detect_max_side", "min_faces_per_class", "detector", "crop_size"):
        assert form.fields[name].help_text, name
    assert "four times the time" in form.fields["upsample"].help_text


def test_the_key_settings_name_the_keys_that_exist(alice_client, dataset):
    html = alice_client.get(f"/labeling/{dataset.pk}/curate/").content.decode()
    assert "info" not in html.split('id="reserved-keys"')[1].split("</span>")[0]
    assert "n not a face" in html and "shift+a select every face on the page" in html
    assert "min-per-class-help" in html
