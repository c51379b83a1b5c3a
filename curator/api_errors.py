"""One error shape for every API endpoint under /api/v1/:

    {"error": {"code": "invalid", "message": "label: Unknown label “cat” ...", "fields": {"label": ["..."]}}}

`code` is a short machine-readable word (DRF's codes: `invalid`, `not_found`, `permission_denied`,
`not_authenticated`, ...; ours: `stale_face`, `bad_image`, `no_active_model`, ...), `message` one
sentence for a person, `fields` (validation errors only) what is wrong with each field. An error
may carry more top-level keys next to `error` (e.g. `current`, the faces' state for a 409).

`exception_handler` is REST_FRAMEWORK["EXCEPTION_HANDLER"]; views raise `ApiError` (or any DRF
exception) and never build an error body by hand."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions, serializers
from rest_framework.views import exception_handler as drf_exception_handler


class ApiError(exceptions.APIException):
    """An error with our own code and status, and optional extra top-level keys."""

    def __init__(self, message: str, *, status: int = 400, code: str = "bad_request", **extra):
        super().__init__(detail=message, code=code)
        self.status_code = status
        self.extra = extra


def _flatten(detail) -> list[str]:
    if isinstance(detail, dict):
        return [m for value in detail.values() for m in _flatten(value)]
    if isinstance(detail, list):
        return [m for value in detail for m in _flatten(value)]
    return [str(detail)]


def _plain(detail):
    """ErrorDetail strings -> str, recursively (JSON renders both alike; tests compare with ==)."""
    if isinstance(detail, dict):
        return {str(k): _plain(v) for k, v in detail.items()}
    if isinstance(detail, list):
        return [_plain(v) for v in detail]
    return str(detail)


def _code(exc: exceptions.APIException) -> str:
    codes = exc.get_codes()
    if isinstance(codes, str):
        return codes
    return exc.default_code


def error_body(exc: exceptions.APIException) -> dict:
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail
        if isinstance(detail, dict):
            fields = _plain(detail)
            parts = []
            for name, value in fields.items():
                text = " ".join(_flatten(value))
                parts.append(text if name == "non_field_errors" else f"{name}: {text}")
            return {"code": "invalid", "message": " ".join(parts), "fields": fields}
        return {"code": "invalid", "message": " ".join(_flatten(detail)), "fields": {}}
    return {"code": _code(exc), "message": " ".join(_flatten(exc.detail))}


def exception_handler(exc, context):
    # Django's own 404 and 403 (get_object_or_404, get_dataset_for) as DRF's, keeping the message.
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(*exc.args)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(*exc.args)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    response.data = {"error": error_body(exc), **getattr(exc, "extra", {})}
    return response


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField(required=False, help_text="Validation errors: field -> messages.")


class ErrorSerializer(serializers.Serializer):
    """The body of every API error (for the OpenAPI schema)."""

    error = ErrorDetailSerializer()
