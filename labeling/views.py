"""Labeling pages: the face grid (keyboard and bulk labeling), the detail panel, the history with
revert, curation (overview, rules, splits, export) and near-duplicates. Views parse, check the
role, call a service or selector and render; JSON answers are for the grid's script."""

from __future__ import annotations

import json
from http import HTTPStatus
from pathlib import PurePosixPath

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from curator.models import Dataset, Face, ImportBatch
from curator.permissions import can_curate, get_dataset_for
from labeling import selectors, services
from labeling.keys import class_keys_for
from labeling.models import BulkAction

FACE_STATE_FIELDS = ("id", "version", "label", "is_unsure", "is_excluded", "split")


def _face_state(face_ids) -> list[dict]:
    return list(Face.objects.filter(pk__in=face_ids).order_by("id").values(*FACE_STATE_FIELDS))


def _error(message: str, status: int = HTTPStatus.BAD_REQUEST, **extra) -> JsonResponse:
    return JsonResponse({"ok": False, "error": message, **extra}, status=status)


def _page_number(raw: str | None) -> int | None:
    try:
        number = int(raw or 1)
    except ValueError:
        return None
    return number if number >= 1 else None


@require_GET
def grid(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = get_dataset_for(request.user, dataset_id)
    flt = selectors.faces_filter(dataset=dataset, params=request.GET)
    per_page = selectors.PER_PAGE_DEFAULT
    if request.GET.get("per_page"):
        try:
            per_page = int(request.GET["per_page"])
        except ValueError:
            per_page = 0
        if per_page not in selectors.PER_PAGE_CHOICES:
            flt.errors.append(f"Faces per page must be one of {', '.join(map(str, selectors.PER_PAGE_CHOICES))}.")
            per_page = selectors.PER_PAGE_DEFAULT
        else:
            flt.values["per_page"] = per_page
    status = HTTPStatus.OK
    page, faces, total = None, [], 0
    number = _page_number(request.GET.get("page"))
    if number is None:
        flt.errors.append(f"“{request.GET.get('page')}” is not a page number.")
    if flt.errors:
        status = HTTPStatus.BAD_REQUEST
    else:
        total = flt.matching.count()
        num_pages = max(1, -(-total // per_page))
        if number > num_pages:
            flt.errors.append(
                f"Page {number} is past the end: this filter has {num_pages} page{'s' if num_pages != 1 else ''}."
            )
            status = HTTPStatus.NOT_FOUND
        else:
            faces = selectors.faces_page(flt=flt, offset=(number - 1) * per_page, limit=per_page)
            # Plain numbers, not a Page: the template must never evaluate the page's queryset.
            page = {
                "number": number,
                "num_pages": num_pages,
                "has_previous": number > 1,
                "has_next": number < num_pages,
                "previous": number - 1,
                "next": number + 1,
            }
    keys = class_keys_for(dataset)
    return render(
        request,
        "labeling/grid.html",
        {
            "dataset": dataset,
            "flt": flt,
            "page": page,
            "faces": selectors.face_tiles(faces=faces, classes=dataset.classes),
            "total": total,
            "keys": keys,
            "keys_json": json.dumps(keys),
            "label_states": selectors.LABEL_STATES,
            "outcomes": selectors.OUTCOMES,
            "sorts": selectors.SORTS,
            "per_page_choices": selectors.PER_PAGE_CHOICES,
            "batches": ImportBatch.objects.filter(dataset=dataset).order_by("-created_at")[:200],
            "metadata_keys": selectors.metadata_keys(dataset=dataset),
            "model_versions": _model_versions(dataset),
            "can_curate": can_curate(request.user, dataset),
            "page_query": _without(request.GET, "page"),
        },
        status=status,
    )


def _model_versions(dataset: Dataset):
    from training.models import ModelVersion

    return ModelVersion.objects.filter(dataset=dataset).order_by("-number")


def _chosen_version(dataset: Dataset, request: HttpRequest):
    """The model version `?model=` names (the grid's or a review queue's), None otherwise (or
    when it is not a version of this dataset): the detail panel then uses the active one."""
    from training.models import ModelVersion

    raw = request.GET.get("model", "")
    if not raw.isdigit():
        return None
    return ModelVersion.objects.filter(dataset=dataset, pk=int(raw)).first()


def _without(params: QueryDict, *names: str) -> str:
    q = params.copy()
    for name in names:
        q.pop(name, None)
    return q.urlencode()


@require_GET
def face_detail(request: HttpRequest, dataset_id: int, face_id: int) -> HttpResponse:
    dataset = get_dataset_for(request.user, dataset_id)
    detail = selectors.face_detail(dataset=dataset, face_id=face_id, model_version=_chosen_version(dataset, request))
    if detail is None:
        raise Http404("No such face in this dataset.")
    return render(request, "labeling/_face_detail.html", {"dataset": dataset, **detail})


def _parse_body(request: HttpRequest) -> dict:
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body or b"{}")
        except (ValueError, UnicodeDecodeError) as exc:
            raise services.InvalidChange("The request body is not valid JSON.") from exc
        if not isinstance(data, dict):
            raise services.InvalidChange("The request body must be a JSON object.")
        return data
    return request.POST.dict()


def _selection(dataset: Dataset, data: dict):
    """The faces a change applies to: explicit ids (with the versions the page showed) or every
    face matching a grid filter (`query`), optionally checked against the count the page showed."""
    if data.get("scope") == "filter":
        flt = selectors.faces_filter(dataset=dataset, params=QueryDict(str(data.get("query", ""))))
        if flt.errors:
            raise services.InvalidChange("The filter is not valid: " + " ".join(flt.errors))
        qs = flt.matching
        expected_count = data.get("expected_count")
        if expected_count not in (None, ""):
            count = qs.count()
            if count != int(expected_count):
                raise services.InvalidChange(
                    f"The filter now matches {count} faces, not the {expected_count} you saw; reload and try again."
                )
        return Face.objects.filter(pk__in=qs.values("pk")), None, flt.values
    ids = data.get("faces")
    if isinstance(ids, str):
        ids = [i for i in ids.split(",") if i.strip()]
    if not isinstance(ids, list):
        raise services.InvalidChange("Give the faces to change (a list of ids) or scope=filter with a query.")
    versions = data.get("versions") or {}
    if not isinstance(versions, dict):
        raise services.InvalidChange("versions must map face ids to the versions you saw.")
    try:
        ids = [int(i) for i in ids]
        versions = {int(k): int(v) for k, v in versions.items()}
    except (TypeError, ValueError) as exc:
        raise services.InvalidChange("Face ids and versions must be whole numbers.") from exc
    return ids, versions, None


@require_POST
def change(request: HttpRequest, dataset_id: int) -> JsonResponse:
    """Apply one change (key press or bulk action) and answer with the new state."""
    dataset = get_dataset_for(request.user, dataset_id)
    try:
        data = _parse_body(request)
        faces, versions, filter_values = _selection(dataset, data)
        params = {"source": "grid"}
        if filter_values is not None:
            params["filter"] = filter_values
        action = services.faces_update(
            user=request.user,
            dataset=dataset,
            faces=faces,
            changes=data.get("changes") or {},
            params=params,
            expected_versions=versions,
        )
    except services.StaleFace as exc:
        return _error(exc.message, HTTPStatus.CONFLICT, current=exc.current)
    except services.LabelingError as exc:
        return _error(exc.message)
    message = f"{action.get_kind_display()}: {action.face_count} face{'s' if action.face_count != 1 else ''} changed."
    body = {"ok": True, "action": action.pk, "changed": action.face_count, "message": message}
    if isinstance(faces, list) and len(faces) <= 1000:
        body["faces"] = _face_state(faces)
    if data.get("flash"):
        messages.success(request, message)
    return JsonResponse(body)


@require_POST
def undo(request: HttpRequest, dataset_id: int) -> JsonResponse:
    dataset = get_dataset_for(request.user, dataset_id)
    try:
        result = services.bulk_action_undo_last(user=request.user, dataset=dataset)
    except services.LabelingError as exc:
        return _error(exc.message)
    reverted = result.action.reverts
    message = (
        f"Undid {reverted.get_kind_display().lower()} of {result.reverted} face{'s' if result.reverted != 1 else ''}."
    )
    if result.conflicts:
        message += f" {len({c['face_id'] for c in result.conflicts})} face(s) changed since and were kept as they are."
    ids = list(reverted.events.values_list("face_id", flat=True).distinct()[:1000])
    return JsonResponse(
        {
            "ok": True,
            "action": result.action.pk,
            "changed": result.reverted,
            "conflicts": result.conflicts[:100],
            "message": message,
            "faces": _face_state(ids),
        }
    )


def _may_revert(user, dataset: Dataset, action: BulkAction) -> bool:
    # Annotators may take back their own changes; anything else is a curator's call.
    return can_curate(user, dataset) or action.user_id == user.pk


@require_GET
def history(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = get_dataset_for(request.user, dataset_id)
    actions = selectors.bulk_actions(dataset=dataset)
    who = request.GET.get("user", "")
    if who == "me":
        actions = actions.filter(user=request.user)
    number = _page_number(request.GET.get("page"))
    paginator = Paginator(actions, 50)
    status = HTTPStatus.OK
    if number is None or number > paginator.num_pages:
        messages.error(request, f"There is no page “{request.GET.get('page')}” of the history.")
        number, status = 1, HTTPStatus.NOT_FOUND
    page = paginator.page(number)
    curator = can_curate(request.user, dataset)
    for action in page.object_list:
        action.may_revert = (curator or action.user_id == request.user.pk) and action.face_count > 0
    return render(
        request,
        "labeling/history.html",
        {"dataset": dataset, "page": page, "who": who},
        status=status,
    )


def revert(request: HttpRequest, dataset_id: int, action_id: int) -> HttpResponse:
    """GET: what a revert would do, conflicts listed. POST: do it."""
    dataset = get_dataset_for(request.user, dataset_id)
    action = get_object_or_404(BulkAction, dataset=dataset, pk=action_id)
    if not _may_revert(request.user, dataset, action):
        raise PermissionDenied("Annotators may only revert their own changes.")
    if request.method == "POST":
        try:
            result = services.bulk_action_revert(user=request.user, action=action)
        except services.LabelingError as exc:
            messages.error(request, exc.message)
            return redirect("labeling:history", dataset_id=dataset.pk)
        text = f"Reverted action {action.pk}: {result.reverted} face(s) restored."
        if result.conflicts:
            faces = len({c["face_id"] for c in result.conflicts})
            text += f" {faces} face(s) changed since then were kept as they are (see action {result.action.pk})."
            messages.warning(request, text)
        else:
            messages.success(request, text)
        return redirect("labeling:history", dataset_id=dataset.pk)
    if request.method != "GET":
        return HttpResponse(status=HTTPStatus.METHOD_NOT_ALLOWED)
    conflicts, restorable = services.bulk_action_conflicts(action=action)
    return render(
        request,
        "labeling/revert.html",
        {
            "dataset": dataset,
            "action": action,
            "conflicts": conflicts[:500],
            "conflict_faces": len({c["face_id"] for c in conflicts}),
            "restorable": restorable,
            "already": action.reverted_by.first(),
        },
    )


# --- Curation ----------------------------------------------------------------------------------


@require_GET
def overview(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = get_dataset_for(request.user, dataset_id)
    curator = can_curate(request.user, dataset)
    return render(
        request,
        "labeling/overview.html",
        {
            "dataset": dataset,
            "ov": selectors.dataset_overview(dataset=dataset),
            "histograms": selectors.quality_histograms_svg(dataset=dataset),
            "can_curate": curator,
            "exports": selectors.exports_list(dataset=dataset) if curator else [],
            "rules": services.RULE_FIELDS,
            "keys": class_keys_for(dataset),
            "rule_actions": BulkAction.objects.filter(dataset=dataset, kind=BulkAction.Kind.RULE)[:20],
        },
    )


def _curator_post(request: HttpRequest, dataset_id: int) -> Dataset:
    if request.method != "POST":
        raise Http404("Use the forms on the curation page.")
    return get_dataset_for(request.user, dataset_id, curate=True)


def _done(request: HttpRequest, dataset: Dataset, text: str) -> HttpResponse:
    messages.success(request, text)
    return redirect("labeling:overview", dataset_id=dataset.pk)


@require_POST
def rule_apply(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = _curator_post(request, dataset_id)
    try:
        action = services.exclusion_rule_apply(
            user=request.user,
            dataset=dataset,
            thresholds={k: request.POST.get(k, "") for k in services.RULE_FIELDS},
        )
    except services.LabelingError as exc:
        messages.error(request, exc.message)
        return redirect("labeling:overview", dataset_id=dataset.pk)
    return _done(request, dataset, f"Rule applied: {action.face_count} face(s) excluded ({action.params['reason']}).")


@require_POST
def class_keys_set(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = _curator_post(request, dataset_id)
    try:
        services.dataset_class_keys_set(
            dataset=dataset, keys={c: request.POST.get(f"key_{c}", "") for c in dataset.classes}
        )
    except services.LabelingError as exc:
        messages.error(request, exc.message)
        return redirect("labeling:overview", dataset_id=dataset.pk)
    keys = ", ".join(f"{k} {c}" for c, k in class_keys_for(dataset).items())
    return _done(request, dataset, f"Labeling keys: {keys}.")


@require_POST
def min_per_class_apply(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = _curator_post(request, dataset_id)
    try:
        action = services.min_per_class_rule_apply(
            user=request.user, dataset=dataset, minimum=request.POST.get("minimum") or None
        )
    except services.LabelingError as exc:
        messages.error(request, exc.message)
        return redirect("labeling:overview", dataset_id=dataset.pk)
    classes = ", ".join(action.params["classes"]) or "none"
    return _done(request, dataset, f"Minimum per class: {action.face_count} face(s) excluded (classes: {classes}).")


@require_POST
def splits_assign(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = _curator_post(request, dataset_id)
    try:
        action = services.splits_assign(
            user=request.user,
            dataset=dataset,
            seed=request.POST.get("seed", "0") or "0",
            ratios=(request.POST.get("train", 70), request.POST.get("val", 15), request.POST.get("test", 15)),
        )
    except services.LabelingError as exc:
        messages.error(request, exc.message)
        return redirect("labeling:overview", dataset_id=dataset.pk)
    return _done(
        request, dataset, f"Splits assigned with seed {action.params['seed']}: {action.face_count} face(s) moved."
    )


@require_POST
def export_create(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = _curator_post(request, dataset_id)
    try:
        path = services.export_create(user=request.user, dataset=dataset)
    except services.LabelingError as exc:
        messages.error(request, exc.message)
        return redirect("labeling:overview", dataset_id=dataset.pk)
    return _done(request, dataset, f"Export ready: {PurePosixPath(path).name}.")


@require_GET
def export_download(request: HttpRequest, dataset_id: int, name: str) -> HttpResponse:
    dataset = get_dataset_for(request.user, dataset_id, curate=True)
    return export_file_response(dataset, name)


def export_file_response(dataset: Dataset, name: str) -> FileResponse:
    if "/" in name or "\\" in name or not name.endswith(".zip") or name.startswith("."):
        raise Http404("No such export.")
    path = f"datasets/{dataset.pk}/exports/{name}"
    if not default_storage.exists(path):
        raise Http404("No such export.")
    return FileResponse(default_storage.open(path, "rb"), as_attachment=True, filename=name)


@require_GET
def duplicates(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = get_dataset_for(request.user, dataset_id)
    try:
        distance = int(request.GET.get("distance", 6))
        if not 0 <= distance <= 16:
            raise ValueError
    except ValueError:
        messages.error(request, "The distance must be a whole number from 0 to 16 bits; showing 6.")
        distance = 6
    groups = selectors.duplicate_groups(dataset=dataset, max_distance=distance)
    only_conflicts = request.GET.get("conflicts") == "1"
    if only_conflicts:
        groups = [g for g in groups if g["conflict"]]
    return render(
        request,
        "labeling/duplicates.html",
        {
            "dataset": dataset,
            "groups": groups[:300],
            "group_count": len(groups),
            "distance": distance,
            "only_conflicts": only_conflicts,
            "can_curate": can_curate(request.user, dataset),
        },
    )


@require_POST
def duplicates_keep(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = get_dataset_for(request.user, dataset_id, curate=True)
    back = reverse("labeling:duplicates", kwargs={"dataset_id": dataset.pk})
    try:
        action = services.duplicates_keep_one(
            user=request.user,
            dataset=dataset,
            keep=request.POST.get("keep", ""),
            faces=[f for f in request.POST.get("faces", "").split(",") if f.strip()],
        )
    except (services.LabelingError, ValueError) as exc:
        messages.error(request, getattr(exc, "message", "Face ids must be whole numbers."))
        return redirect(back)
    messages.success(request, f"Kept face {action.params['kept']}; excluded {action.face_count} duplicate(s).")
    return redirect(back)
