"""Loading models when a process starts, so the first request or task costs what every later one
costs (a cold predict path reads dlib's detectors, the 68-point predictor, the face network and a
Keras model: seconds, where a warm one answers in tens of milliseconds).

A role is "web" or a Celery queue name. Apps register what their roles need in AppConfig.ready()
(curator never imports the apps above it), and the process entry points start the warm-up:

    warmer_register(faces_warm, roles={"web", "align"})    # in an AppConfig.ready()
    warm_in_background({"web"})                            # curator/wsgi.py, celery's process init

Warming runs in a daemon thread: a slow model never delays the server's or worker's start, and a
request that arrives meanwhile waits on the same per-model locks instead of loading twice. A
warmer that fails is logged and the others still run: a missing model file must not stop a worker
that has other work, and the request that needs the model gets the clear error its loader gives.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from django.conf import settings

logger = logging.getLogger(__name__)

_warmers: list[tuple[Callable[[], None], frozenset[str]]] = []


def warmer_register(warmer: Callable[[], None], *, roles: Iterable[str]) -> None:
    if all(existing is not warmer for existing, _ in _warmers):
        _warmers.append((warmer, frozenset(roles)))


def warmers_for(roles: Iterable[str]) -> list[Callable[[], None]]:
    wanted = set(roles)
    return [warmer for warmer, serves in _warmers if serves & wanted]


def warm(roles: Iterable[str]) -> dict[str, float | str]:
    """Run the warmers of these roles now, in registration order: {warmer name: seconds or error}."""
    report: dict[str, float | str] = {}
    for warmer in warmers_for(roles):
        name = f"{warmer.__module__}.{warmer.__qualname__}"
        started = time.perf_counter()
        try:
            warmer()
        except Exception as exc:  # logged, never raised: see the module docstring
            logger.warning("Warm-up %s failed: %s", name, exc, exc_info=True)
            report[name] = f"failed: {exc}"
        else:
            report[name] = round(time.perf_counter() - started, 2)
    logger.info("Warm-up of %s: %s", ", ".join(sorted(set(roles))), report)
    return report


def warm_in_background(roles: Iterable[str]) -> threading.Thread | None:
    """Start warming in a daemon thread when CURATOR_WARM_AT_START is on (None otherwise)."""
    if not settings.CURATOR_WARM_AT_START:
        return None
    roles = frozenset(roles)
    thread = threading.Thread(target=warm, args=(roles,), name="curator-warm-up", daemon=True)
    thread.start()
    return thread
