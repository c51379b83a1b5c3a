"""Schema fuzzing: schemathesis generates requests for every operation of the OpenAPI schema
drf-spectacular serves (valid ones and, negated, invalid ones) and sends them to a live test server
as a curator (alice) and as an annotator (bob). Every answer must be below 500, and every answer
the schema describes must match it (body schema and content type). Examples per operation are
bounded so the whole run stays near a minute; the figures are printed (-s) at the end."""

import json
import logging
import time

import pytest
import schemathesis
from django.test import Client
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from tests.labeling.factories import make_faces

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES = {GenerationMode.POSITIVE: 5, GenerationMode.NEGATIVE: 2}
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


@pytest.fixture
def api_schema(admin_user):
    client = Client()
    client.force_login(admin_user)
    return schemathesis.openapi.from_dict(json.loads(client.get("/api/v1/schema/?format=json").content))


def fuzz(schema, base_url: str, token: str, real_ids: dict[str, int]) -> tuple[int, int, list[str]]:
    """(operations, requests, failures) of one user's run."""
    failures: list[str] = []
    sent = [0]
    operations = [result.ok() for result in schema.get_all_operations()]
    headers = {"Authorization": f"Token {token}"}
    for operation in operations:
        for mode, count in EXAMPLES.items():
            try:
                _runner(operation, mode, count, base_url, headers, real_ids, sent, failures)()
            except Unsatisfiable:  # nothing of this operation can be negated (no parameters, no body)
                assert mode == GenerationMode.NEGATIVE, operation.label
    return len(operations), sent[0], failures


def _runner(operation, mode, count, base_url, headers, real_ids, sent, failures):
    @settings(
        max_examples=count,
        deadline=None,
        database=None,
        derandomize=True,  # the same requests every run: a failure here is reproducible
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode), use_real=st.booleans())
    def run(case, use_real):
        if use_real:  # half the requests name objects that exist, so views get past their 404
            for name in case.path_parameters or {}:
                if name in real_ids:
                    case.path_parameters[name] = real_ids[name]
        response = case.call(base_url=base_url, headers=headers, timeout=30)
        sent[0] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except (Exception, BaseExceptionGroup) as exc:  # collected: one run reports every failure
            failures.append(f"{mode} {operation.label}: {_first_lines(exc)}")

    return run


def test_every_operation_answers_below_500_and_as_its_schema_says(
    api_schema, live_server, alice, bob, dataset, settings
):
    logging.getLogger("django.request").setLevel(logging.ERROR)  # every 4xx would log a warning line
    settings.CURATOR_PREDICT_RATE = None
    settings.CURATOR_PREDICT_IP_RATE = None
    faces = make_faces(dataset, 6, labels=["female", "male", ""])
    real_ids = {"dataset_id": dataset.pk, "face_id": faces[0].pk, "id": dataset.pk}
    started = time.monotonic()
    report = {}
    failures = []
    for user in (alice, bob):
        token = Token.objects.get_or_create(user=user)[0].key
        operations, sent, found = fuzz(api_schema, live_server.url, token, real_ids)
        report[user.username] = {"operations": operations, "requests": sent, "failures": len(found)}
        failures += [f"{user.username}: {f}" for f in found]
    print(f"schema fuzzing: {json.dumps(report)} in {time.monotonic() - started:.1f} s")
    assert failures == [], "\n".join(failures)


def _first_lines(exc: BaseException) -> str:
    """The failure's title and the first lines of its detail (schemathesis's text is long)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return " | ".join(lines[:4])[:400]
