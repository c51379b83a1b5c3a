"""Rate limits: the predict API per user and per client address (DRF throttles), and failed log-in
attempts per user name and per client address (Django's auth views do not throttle; our log-in page
and the admin's both go through `curator.account_views.login_throttled`).

Counts live in the `throttle` cache (settings.CACHES: Redis, so every web process of every host
sees the same counts; a per-process memory cache would let N processes allow N times the rate).
When that cache cannot be reached the limits are not applied (logged): an outage of Redis must not
lock every user out of the API or the log-in page.

Rates are strings `<count>/<period>` with an optional multiplier: `60/min`, `10/15min`, `1000/day`
(units s, sec, m, min, h, hour, d, day); an empty rate (or `off`) disables the limit.
"""

from __future__ import annotations

import logging
import math
import re
import time
import unicodedata
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import caches
from rest_framework.throttling import SimpleRateThrottle

logger = logging.getLogger(__name__)

CACHE_ALIAS = "throttle"
_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([a-z]+)\s*$")


def parse_rate(rate: str | None) -> tuple[int, int] | None:
    """`"10/15min"` -> (10, 900); None for no limit. A malformed rate is a configuration error."""
    if rate is None or rate.strip().lower() in {"", "off", "none", "0"}:
        return None
    match = _RATE.match(rate.lower())
    if not match or match.group(3) not in _UNITS:
        raise ValueError(f"Bad rate “{rate}”: write it as <count>/<period>, e.g. 60/min or 10/15min.")
    count, multiplier, unit = int(match.group(1)), int(match.group(2) or 1), match.group(3)
    return count, multiplier * _UNITS[unit]


def client_ip(request) -> str:
    """The client's address: REMOTE_ADDR, or behind CURATOR_PROXY_COUNT proxies the address the
    nearest of them saw in X-Forwarded-For (any further left is the client's own claim, which a
    client could use to dodge a per-address limit)."""
    remote_addr = request.META.get("REMOTE_ADDR") or ""
    proxies = settings.CURATOR_PROXY_COUNT
    xff = request.META.get("HTTP_X_FORWARDED_FOR")
    if not proxies or not xff:
        return remote_addr
    addresses = [a.strip() for a in xff.split(",") if a.strip()]
    return addresses[-min(proxies, len(addresses))] if addresses else remote_addr


def _cache():
    return caches[CACHE_ALIAS]


# --- The predict API ------------------------------------------------------------------------------


class _SettingsRateThrottle(SimpleRateThrottle):
    """A DRF throttle whose rate is read from a Django setting when the request comes (so tests and
    deployments set it like any other setting), counted in the shared `throttle` cache."""

    rate_setting = ""

    def __init__(self):
        # DRF's own __init__ reads its settings' DEFAULT_THROTTLE_RATES, captured at import.
        parsed = parse_rate(getattr(settings, self.rate_setting))
        self.rate = getattr(settings, self.rate_setting) if parsed else None
        self.num_requests, self.duration = parsed or (None, None)
        self.cache = _cache()

    def get_ident(self, request) -> str:
        # DRF's own trusts the whole X-Forwarded-For header unless NUM_PROXIES is set.
        return client_ip(request)

    def allow_request(self, request, view) -> bool:
        try:
            return super().allow_request(request, view)
        except Exception:  # the cache (Redis) is down: serve rather than refuse everyone
            logger.warning("throttle %s: cache unavailable, not limiting", self.scope, exc_info=True)
            return True

    def wait(self) -> float | None:
        wait = super().wait()
        # Retry-After is a whole number of seconds; never tell a client to retry before it may.
        return math.ceil(wait) if wait is not None else None


class PredictUserThrottle(_SettingsRateThrottle):
    """Requests to the predict API per user (CURATOR_PREDICT_RATE)."""

    scope = "predict-user"
    rate_setting = "CURATOR_PREDICT_RATE"

    def get_cache_key(self, request, view) -> str:
        ident = request.user.pk if request.user and request.user.is_authenticated else self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}


class PredictIPThrottle(_SettingsRateThrottle):
    """Requests to the predict API per client address, whoever the user (CURATOR_PREDICT_IP_RATE)."""

    scope = "predict-ip"
    rate_setting = "CURATOR_PREDICT_IP_RATE"

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


# --- Failed log-ins -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoginBlock:
    """Why a log-in is refused for now, and for how long."""

    seconds: int
    by: str  # "user" or "address"

    @property
    def message(self) -> str:
        minutes = math.ceil(self.seconds / 60)
        wait = f"{minutes} minute{'s' if minutes != 1 else ''}" if self.seconds >= 60 else f"{self.seconds} seconds"
        who = "this user name" if self.by == "user" else "your network address"
        return f"Too many failed log-in attempts for {who}. Try again in {wait}."


def login_name_key(username: str) -> str:
    """The user name as the count knows it: as Django's log-in form and User model normalise it
    (NFKC, so a fullwidth `ｃａｒｏｌ` is `carol`), stripped, and case-folded (the count is
    stricter than the match: `Carol` and `carol` share one count)."""
    return unicodedata.normalize("NFKC", username).strip().casefold()


def _login_keys(request, username: str) -> list[tuple[str, str, tuple[int, int] | None]]:
    return [
        ("user", f"login-fail:user:{login_name_key(username)}", parse_rate(settings.CURATOR_LOGIN_USER_RATE)),
        ("address", f"login-fail:ip:{client_ip(request)}", parse_rate(settings.CURATOR_LOGIN_IP_RATE)),
    ]


def _recent(history: list[float], now: float, duration: int) -> list[float]:
    return [t for t in history if t > now - duration]


def _login_counters(request, username: str, now: float):
    """(by, cache key, allowed count, window seconds, failures within the window) of each limit
    that applies: the user name's (when one was typed) and the address's."""
    for by, key, rate in _login_keys(request, username):
        if rate is None or (by == "user" and not login_name_key(username)):
            continue
        count, duration = rate
        yield by, key, count, duration, _recent(_cache().get(key, []), now, duration)


def login_blocked(request, username: str) -> LoginBlock | None:
    """A block when this user name or this address already failed too often within its window."""
    now = time.time()
    try:
        for by, _key, count, duration, history in _login_counters(request, username, now):
            if len(history) >= count:
                return LoginBlock(seconds=max(1, math.ceil(min(history) + duration - now)), by=by)
    except Exception:
        logger.warning("login throttle: cache unavailable, not limiting", exc_info=True)
    return None


def login_failure_record(request, username: str) -> None:
    """Count one failed log-in against the user name and the address."""
    now = time.time()
    try:
        for _by, key, count, duration, history in _login_counters(request, username, now):
            # Only the newest `count` matter for the decision; the list stays small.
            _cache().set(key, (history + [now])[-count:], duration)
    except Exception:
        logger.warning("login throttle: cache unavailable, failure not counted", exc_info=True)


def login_success_record(request, username: str) -> None:
    """A correct password clears the user name's failures (not the address's: one good account
    must not reset a guesser's count for the others)."""
    try:
        _cache().delete(_login_keys(request, username)[0][1])
    except Exception:
        logger.warning("login throttle: cache unavailable", exc_info=True)
