"""Rate limits on the predict API (per user, per address) and on failed log-ins (per user name, per
address), counted in the real Redis cache: a clear 429 with Retry-After, and no lock-out when Redis
is down."""

import uuid

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from curator.throttling import parse_rate
from tests.conftest import PASSWORD

PREDICT = "/api/v1/predict"
LOGIN = "/accounts/login/"


@pytest.fixture(autouse=True)
def own_counts(settings):
    """Counts of this test only: a fresh key prefix in the shared Redis (never clear(): that would
    flush everyone's database), and every limit off unless the test sets it."""
    settings.CACHES = {
        **settings.CACHES,
        "throttle": {**settings.CACHES["throttle"], "KEY_PREFIX": f"test-throttle-{uuid.uuid4().hex}"},
    }
    settings.CURATOR_PREDICT_RATE = None
    settings.CURATOR_PREDICT_IP_RATE = None
    settings.CURATOR_LOGIN_USER_RATE = None
    settings.CURATOR_LOGIN_IP_RATE = None
    settings.CURATOR_PROXY_COUNT = 0


def predict(user, address="10.0.0.1", **headers):
    key = Token.objects.get_or_create(user=user)[0].key
    # No model exists: the view answers 409, but the throttle runs (and counts) before the view.
    return Client().post(
        PREDICT, data=b"x", content_type="image/jpeg", HTTP_AUTHORIZATION=f"Token {key}", REMOTE_ADDR=address, **headers
    )


def login(username, password, address="10.0.0.1"):
    return Client().post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=address)


def test_rates_are_count_slash_period_with_a_multiplier():
    assert parse_rate("60/min") == (60, 60)
    assert parse_rate("10/15min") == (10, 900)
    assert parse_rate("1000/day") == (1000, 86400)
    assert parse_rate("5/2h") == (5, 7200)
    assert parse_rate("") is None and parse_rate("off") is None and parse_rate(None) is None
    with pytest.raises(ValueError, match="60/min"):
        parse_rate("sixty a minute")


def test_predict_per_user_limit_is_429_in_the_error_shape_with_retry_after(settings, alice, bob):
    settings.CURATOR_PREDICT_RATE = "2/min"
    assert predict(alice).status_code != 429
    assert predict(alice).status_code != 429
    response = predict(alice)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "throttled"
    assert "throttled" in response.json()["error"]["message"]
    assert 1 <= int(response["Retry-After"]) <= 60
    # bob has his own count, from the same address.
    assert predict(bob).status_code != 429


def test_predict_per_address_limit_counts_every_user_of_that_address(settings, alice, bob):
    settings.CURATOR_PREDICT_IP_RATE = "3/min"
    for _ in range(2):
        assert predict(alice).status_code != 429
    assert predict(bob).status_code != 429
    assert predict(bob).status_code == 429
    assert predict(alice).status_code == 429
    assert predict(alice, address="10.0.0.2").status_code != 429


def test_a_forged_x_forwarded_for_does_not_dodge_the_address_limit(settings, alice):
    settings.CURATOR_PREDICT_IP_RATE = "1/min"
    assert predict(alice, HTTP_X_FORWARDED_FOR="1.1.1.1").status_code != 429
    assert predict(alice, HTTP_X_FORWARDED_FOR="2.2.2.2").status_code == 429


def test_behind_one_proxy_the_address_the_proxy_saw_is_limited(settings, alice):
    settings.CURATOR_PREDICT_IP_RATE = "1/min"
    settings.CURATOR_PROXY_COUNT = 1
    # One proxy at 10.0.0.1 forwards for two different clients.
    assert predict(alice, HTTP_X_FORWARDED_FOR="forged, 203.0.113.5").status_code != 429
    assert predict(alice, HTTP_X_FORWARDED_FOR="203.0.113.6").status_code != 429
    assert predict(alice, HTTP_X_FORWARDED_FOR="other-forged, 203.0.113.5").status_code == 429


def test_no_token_is_still_401_not_429(settings, alice):
    settings.CURATOR_PREDICT_RATE = "1/min"
    response = Client().post(PREDICT, data=b"x", content_type="image/jpeg", REMOTE_ADDR="10.0.0.1")
    assert response.status_code == 401


def test_with_redis_unreachable_the_api_still_serves(settings, alice):
    settings.CURATOR_PREDICT_RATE = "1/min"
    settings.CACHES = {
        **settings.CACHES,
        "throttle": {**settings.CACHES["throttle"], "LOCATION": "redis://127.0.0.1:1/0"},
    }
    assert predict(alice).status_code == 409
    assert predict(alice).status_code == 409  # not 429, not 500


def test_failed_logins_per_user_name_then_429_page_with_retry_after(settings, alice, bob):
    settings.CURATOR_LOGIN_USER_RATE = "3/15min"
    for _ in range(3):
        response = login("alice", "wrong")
        assert response.status_code == 200
        assert b"didn" in response.content or b"correct" in response.content  # the form's error
    # Now even the right password is refused until the window has passed.
    response = login("alice", PASSWORD)
    assert response.status_code == 429
    assert 800 <= int(response["Retry-After"]) <= 900
    assert b"Too many failed log-in attempts for this user name. Try again in 15 minutes." in response.content
    assert "_auth_user_id" not in response.client.session
    # The user name is case-insensitive for the count; bob is not affected.
    assert login("ALICE", PASSWORD).status_code == 429
    response = login("bob", PASSWORD)
    assert response.status_code == 302


def test_a_correct_password_clears_the_user_names_failures(settings, alice):
    settings.CURATOR_LOGIN_USER_RATE = "3/15min"
    login("alice", "wrong")
    login("alice", "wrong")
    assert login("alice", PASSWORD).status_code == 302
    login("alice", "wrong")
    login("alice", "wrong")
    assert login("alice", PASSWORD).status_code == 302


def test_failed_logins_per_address_block_every_user_name_from_it(settings, alice):
    settings.CURATOR_LOGIN_IP_RATE = "4/15min"
    for name in ["u1", "u2", "u3", "u4"]:
        assert login(name, "guess").status_code == 200
    response = login("alice", PASSWORD)
    assert response.status_code == 429
    assert b"your network address" in response.content
    assert login("alice", PASSWORD, address="10.9.9.9").status_code == 302


def test_with_redis_unreachable_people_can_still_log_in(settings, alice):
    settings.CURATOR_LOGIN_USER_RATE = "1/15min"
    settings.CACHES = {
        **settings.CACHES,
        "throttle": {**settings.CACHES["throttle"], "LOCATION": "redis://127.0.0.1:1/0"},
    }
    assert login("alice", "wrong").status_code == 200
    assert login("alice", PASSWORD).status_code == 302


ADMIN_LOGIN = "/admin/login/"


def admin_login(username, password, address="10.0.0.1"):
    return Client().post(ADMIN_LOGIN, {"username": username, "password": password}, REMOTE_ADDR=address)


def test_the_admin_login_is_limited_like_ours(settings, admin_user):
    settings.CURATOR_LOGIN_USER_RATE = "3/15min"
    for _ in range(3):
        assert admin_login(admin_user.username, "wrong").status_code == 200
    response = admin_login(admin_user.username, PASSWORD)
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert "_auth_user_id" not in response.client.session


def test_failures_at_the_admin_and_at_our_page_share_one_count(settings, alice, admin_user):
    settings.CURATOR_LOGIN_IP_RATE = "4/15min"
    assert login("alice", "wrong").status_code == 200
    assert login("alice", "wrong").status_code == 200
    assert admin_login(admin_user.username, "wrong").status_code == 200
    assert admin_login(admin_user.username, "wrong").status_code == 200
    assert admin_login(admin_user.username, PASSWORD).status_code == 429
    assert login("alice", PASSWORD).status_code == 429


def test_a_right_admin_password_logs_in_and_clears_the_count(settings, admin_user):
    settings.CURATOR_LOGIN_USER_RATE = "2/15min"
    assert admin_login(admin_user.username, "wrong").status_code == 200
    response = admin_login(admin_user.username, PASSWORD)
    assert response.status_code == 302
    assert admin_login(admin_user.username, "wrong").status_code == 200
    assert admin_login(admin_user.username, PASSWORD).status_code == 302


def test_a_look_alike_user_name_shares_the_count_of_the_name_django_logs_in(settings, alice):
    """Django's form NFKC-normalises the name before authenticating: fullwidth ａｌｉｃｅ logs in as
    alice, so it must be refused once alice's count is full, and must not clear it."""
    settings.CURATOR_LOGIN_USER_RATE = "3/15min"
    fullwidth = "ａｌｉｃｅ"
    assert login(fullwidth, PASSWORD).status_code == 302  # the premise: Django accepts it as alice
    for _ in range(3):
        assert login("alice", "wrong").status_code == 200
    assert login(fullwidth, PASSWORD).status_code == 429
    assert login(" ALICE ", PASSWORD).status_code == 429
    # And failures under the look-alike count toward alice too.
    settings.CURATOR_LOGIN_USER_RATE = "2/15min"
    assert login("bob", "wrong").status_code == 200
    assert login("ｂｏｂ", "wrong").status_code == 200
    assert login("bob", PASSWORD).status_code == 429
