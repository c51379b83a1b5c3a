"""The API token page: a logged-in user creates their token (shown once), uses it on /api/v1/,
replaces it, and revokes it (401 afterwards). Nobody sees or revokes another user's token."""

import re

from django.test import Client
from rest_framework.authtoken.models import Token

PAGE = "/account/token/"


def new_key(response) -> str:
    match = re.search(rb'id="new-token"[^>]*value="([0-9a-f]{40})"', response.content)
    assert match, response.content.decode()
    return match.group(1).decode()


def api(key: str):
    return Client().get("/api/v1/datasets/", HTTP_AUTHORIZATION=f"Token {key}")


def test_the_header_links_to_the_page_and_it_needs_a_login(alice_client):
    assert b'href="/account/token/"' in alice_client.get("/").content
    response = Client().get(PAGE)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_create_use_replace_revoke(alice_client, alice, dataset):
    page = alice_client.get(PAGE)
    assert b"You have no API token." in page.content

    created = alice_client.post(PAGE, {"action": "create"})
    assert created.status_code == 200
    assert "no-store" in created["Cache-Control"] or "no-cache" in created["Cache-Control"]
    key = new_key(created)
    assert Token.objects.get(user=alice).key == key
    response = api(key)
    assert response.status_code == 200
    assert [d["name"] for d in response.json()] == ["faces"]

    # Shown once: the page afterwards only says a token exists.
    again = alice_client.get(PAGE)
    assert key.encode() not in again.content
    assert b"You have a token, created" in again.content

    replaced = new_key(alice_client.post(PAGE, {"action": "create"}))
    assert replaced != key
    assert api(key).status_code == 401
    assert api(replaced).status_code == 200

    revoked = alice_client.post(PAGE, {"action": "revoke"}, follow=True)
    assert b"Your API token was revoked" in revoked.content
    assert b"You have no API token." in revoked.content
    response = api(replaced)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


def test_each_user_manages_only_their_own_token(alice_client, bob_client, alice, bob):
    alice_key = new_key(alice_client.post(PAGE, {"action": "create"}))
    bob_client.post(PAGE, {"action": "revoke"})
    assert Token.objects.filter(user=alice, key=alice_key).exists()
    assert b"You have no API token." in bob_client.get(PAGE).content


def test_a_bad_action_says_what_to_do(alice_client):
    response = alice_client.post(PAGE, {"action": "steal"}, follow=True)
    assert b"Unknown action: choose Create or Revoke." in response.content


def test_revoking_without_a_token_says_so(alice_client):
    response = alice_client.post(PAGE, {"action": "revoke"}, follow=True)
    assert b"You had no API token." in response.content
