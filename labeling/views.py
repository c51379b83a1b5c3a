"""Labeling pages: the face grid (keyboard and bulk labeling), the detail panel, the history with
revert, curation (overview, rules, splits, export) and near-duplicates. Views parse, check the
role, call a service or selector and render. The grid's script changes labels through the REST API
(labeling/api.py), not through views of its own."""

from __future__ import annotations

import json
from http import HTTPStatus
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from curator.models import Dataset, Face, ImportBatch
from curator.params import id_param
from curator.permissions import can_curate, get_dataset_for
from labeling import filters, selectors, services, similarity
from labeling.extensions import prediction_provider
from labeling.keys import class_keys_for
from labeling.models import BulkAction


def _page_number(raw: str | None) -> int | None:
    try:
        number = int(raw or 1)
    except ValueError:
        return None
    return number if number >= 1 else None


@require_GET
def grid(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = get_dataset_for(request.user, dataset_id)
    flt = filters.face_filter(dataset=dataset, params=request.GET)
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
            faces = selectors.faces_page(
                flt=flt,
                offset=(number - 1) * per_page,
                limit=per_page,
                after=id_param(request.GET.get("after", "")),
                before=id_param(request.GET.get("before", "")),
            )
            similarity.faces_attach_distances(faces=faces, values=flt.values, dataset=dataset)
            # Plain numbers, not a Page: the template must never evaluate the page's queryset.
            # Next and previous carry the face they continue from (keyset: no OFFSET to walk).
            page = {
                "number": number,
                "num_pages": num_pages,
                "has_previous": number > 1,
                "has_next": number < num_pages,
                "previous": number - 1,
                "next": number + 1,
                "previous_link": f"page={number - 1}" + (f"&before={faces[0].pk}" if faces and number > 2 else ""),
                "next_link": f"page={number + 1}" + (f"&after={faces[-1].pk}" if faces else ""),
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
            "label_states": filters.LABEL_STATES,
            "outcomes": filters.OUTCOMES,
            "sorts": filters.sort_names(),
            "per_page_choices": selectors.PER_PAGE_CHOICES,
            "batches": ImportBatch.objects.filter(dataset=dataset).order_by("-created_at")[:200],
            "metadata_keys": selectors.metadata_keys(dataset=dataset),
            "metadata_columns": selectors.metadata_columns(dataset=dataset),
            "model_versions": _model_versions(dataset),
            "can_curate": can_curate(request.user, dataset),
            "page_query": _without(request.GET, "page", "after", "before"),
        },
        status=status,
    )


def _model_versions(dataset: Dataset):
    return prediction_provider().versions(dataset=dataset)


def _chosen_version(dataset: Dataset, request: HttpRequest):
    """The model version `?model=` names (the grid's or a review queue's), None otherwise (or
    when it is not a version of this dataset): the detail panel then uses the active one."""
    version_id = id_param(request.GET.get("model"))
    if version_id is None:
        return None
    return prediction_provider().version(dataset=dataset, version_id=version_id)


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
    # The grid sends its filter along, so the face page's previous/next follow the grid's order.
    return render(
        request,
        "labeling/_face_detail.html",
        {"dataset": dataset, **detail, "grid_query": _without(request.GET, "page")},
    )


@require_GET
def face_page(request: HttpRequest, dataset_id: int, face_id: int) -> HttpResponse:
    """The shareable page of one face. With the grid's filter in its query string, previous and
    next walk that filter in the grid's order; without, they go by id."""
    dataset = get_dataset_for(request.user, dataset_id)
    query = _without(request.GET, "page", "per_page")
    flt = None
    if query:
        flt = filters.face_filter(dataset=dataset, params=request.GET)
        if flt.errors:
            messages.error(
                request, "The filter in this link is not valid, so previous/next go by id: " + " ".join(flt.errors)
            )
            flt, query = None, ""
        elif not flt.values:  # only layout parameters (panels, size): every face, by id
            flt = None
    page = selectors.face_page(dataset=dataset, face_id=face_id, flt=flt)
    if page is None:
        raise Http404("No such face in this dataset.")
    keys = class_keys_for(dataset)
    return render(
        request,
        "labeling/face.html",
        {
            "dataset": dataset,
            **page,
            "query": query,
            "filter_words": selectors.filter_words(flt.values) if flt else "",
            "keys": keys,
            "can_curate": can_curate(request.user, dataset),
        },
    )


def _may_revert(user, dataset: Dataset, action: BulkAction) -> bool:
    # Annotators may take back their own changes; anything else is a curator's call.
    return can_curate(user, dataset) or action.user_id == user.pk


@require_GET
def history(request: HttpRequest, dataset_id: int) -> HttpResponse:
    """Every action on the dataset, newest first, in words; narrowed by who (`user`: a username or
    `me`), what (`kind`) and which face (`face`)."""
    dataset = get_dataset_for(request.user, dataset_id)
    who, kind, face = request.GET.get("user", ""), request.GET.get("kind", ""), request.GET.get("face", "").strip()
    status = HTTPStatus.OK
    if "\x00" in who:  # no user name holds NUL, and PostgreSQL refuses it in a query
        messages.error(request, "That is not a user name; showing everyone's actions.")
        who, status = "", HTTPStatus.BAD_REQUEST
    if kind and kind not in BulkAction.Kind.values:
        messages.error(request, f"There is no kind of action “{kind}”; showing every kind.")
        kind, status = "", HTTPStatus.BAD_REQUEST
    face_id = id_param(face)
    if face and face_id is None:
        messages.error(request, f"“{face}” is not a face id; showing every face.")
        face, status = "", HTTPStatus.BAD_REQUEST
    actions = selectors.bulk_actions_filtered(
        dataset=dataset,
        user=request.user if who == "me" else None,
        username="" if who == "me" else who,
        kind=kind,
        face_id=face_id,
    )
    # Next / previous links carry the action they continue from (keyset); a page number alone
    # (typed in) is an offset. The number in the links is what the page says it is.
    after, before, cursor_error = _history_cursor(request, dataset)
    if cursor_error:
        messages.error(request, cursor_error)
        status = HTTPStatus.BAD_REQUEST
    number = _page_number(request.GET.get("page"))
    total = actions.count()
    num_pages = max(1, -(-total // selectors.HISTORY_PAGE))
    if number is None or (after is None and before is None and number > num_pages):
        messages.error(request, f"There is no page “{request.GET.get('page')}” of the history.")
        number, status = 1, HTTPStatus.NOT_FOUND
    if cursor_error:
        number = 1
    page = selectors.history_page(
        actions=actions,
        limit=selectors.HISTORY_PAGE,
        offset=(number - 1) * selectors.HISTORY_PAGE,
        after=after,
        before=before,
    )
    if not page.has_newer:
        number = 1
    curator = can_curate(request.user, dataset)
    for action in page.actions:
        action.may_revert = (curator or action.user_id == request.user.pk) and action.face_count > 0
    pager = {
        "number": number,
        "num_pages": max(num_pages, number),
        "newer_link": f"page={max(1, number - 1)}&before={page.actions[0].pk}"
        if page.has_newer and page.actions
        else "",
        "older_link": f"page={number + 1}&after={page.actions[-1].pk}" if page.has_older else "",
    }
    from django.contrib.auth import get_user_model

    people = (
        get_user_model()
        .objects.filter(pk__in=BulkAction.objects.filter(dataset=dataset).values("user_id"))
        .order_by("username")
        .values_list("username", flat=True)
    )
    return render(
        request,
        "labeling/history.html",
        {
            "dataset": dataset,
            "total": total,
            "pager": pager,
            "rows": selectors.history_rows(actions=page.actions),
            "who": who,
            "kind": kind,
            "face": face,
            "kinds": BulkAction.Kind.choices,
            "people": people,
            "page_query": _without(request.GET, "page", "after", "before"),
        },
        status=status,
    )


def _history_cursor(request: HttpRequest, dataset) -> tuple[BulkAction | None, BulkAction | None, str]:
    """The actions `after` / `before` name (at most one of them), and what is wrong with them."""
    given = {key: request.GET.get(key, "") for key in ("after", "before") if request.GET.get(key, "").strip()}
    if len(given) > 1:
        return (
            None,
            None,
            "A history page continues either after an action or before one, not both; showing the newest.",
        )
    if not given:
        return None, None, ""
    [(key, raw)] = given.items()
    action_id = id_param(raw)
    if action_id is None:
        return None, None, f"“{raw}” is not an action id; showing the newest actions."
    action = BulkAction.objects.filter(dataset=dataset, pk=action_id).only("pk", "created_at").first()
    if action is None:
        return None, None, f"There is no action {action_id} in this dataset's history; showing the newest actions."
    return (action, None, "") if key == "after" else (None, action, "")


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
    preview = services.bulk_action_revert_preview(
        action=action,
        after=id_param(request.GET.get("after", "")),
        conflicts_after=id_param(request.GET.get("conflicts_after", "")),
    )
    return render(
        request,
        "labeling/revert.html",
        {
            "dataset": dataset,
            "action": action,
            "params": selectors.action_params_words(action),
            **preview,
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
            **(_export_context(dataset) if curator else {}),
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


def _thresholds(params) -> dict:
    return {k: params.get(k, "") for k in services.RULE_FIELDS}


def _rule_preview_page(request: HttpRequest, dataset: Dataset, *, title: str, action_url: str, hidden: dict, preview):
    return render(
        request,
        "labeling/rule_preview.html",
        {
            "dataset": dataset,
            "title": title,
            "action_url": action_url,
            "hidden": hidden,
            "preview": preview,
            "max_share": round(settings.CURATOR_MAX_ACTION_SHARE * 100, 1),
        },
    )


@require_GET
def rule_preview(request: HttpRequest, dataset_id: int) -> HttpResponse:
    """What an exclusion rule would exclude (count, share, a sample), with the Confirm button;
    nothing changes until it is pressed."""
    dataset = get_dataset_for(request.user, dataset_id, curate=True)
    thresholds = _thresholds(request.GET)
    try:
        preview = services.exclusion_rule_preview(dataset=dataset, thresholds=thresholds)
    except services.LabelingError as exc:
        messages.error(request, exc.message)
        return redirect("labeling:overview", dataset_id=dataset.pk)
    return _rule_preview_page(
        request,
        dataset,
        title="Exclusion rule: "
        + selectors.action_params_words(BulkAction(kind=BulkAction.Kind.RULE, params=preview.params)),
        action_url=reverse("labeling:rule_apply", kwargs={"dataset_id": dataset.pk}),
        hidden={k: v for k, v in thresholds.items() if v not in ("", None)},
        preview=preview,
    )


@require_GET
def min_per_class_preview(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = get_dataset_for(request.user, dataset_id, curate=True)
    try:
        preview = services.min_per_class_rule_preview(dataset=dataset, minimum=request.GET.get("minimum") or None)
    except services.LabelingError as exc:
        messages.error(request, exc.message)
        return redirect("labeling:overview", dataset_id=dataset.pk)
    classes = ", ".join(preview.params["classes"]) or "none"
    return _rule_preview_page(
        request,
        dataset,
        title=f"Minimum per class: exclude classes with fewer than {preview.params['minimum']} faces ({classes})",
        action_url=reverse("labeling:min_per_class_apply", kwargs={"dataset_id": dataset.pk}),
        hidden={"minimum": preview.params["minimum"]},
        preview=preview,
    )


def _confirmed_large(request: HttpRequest) -> bool:
    return request.POST.get("confirm_large") in ("1", "on", "true")


def _needs_confirmation(request: HttpRequest, exc: services.NeedsConfirmation, preview_url: str, query: dict):
    # Back to the preview, where the second confirmation (a checkbox) is shown.
    messages.error(request, exc.message)
    return redirect(f"{preview_url}?{urlencode(query)}")


@require_POST
def rule_apply(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = _curator_post(request, dataset_id)
    thresholds = _thresholds(request.POST)
    try:
        action = services.exclusion_rule_apply(
            user=request.user, dataset=dataset, thresholds=thresholds, confirmed_large=_confirmed_large(request)
        )
    except services.NeedsConfirmation as exc:
        url = reverse("labeling:rule_preview", kwargs={"dataset_id": dataset.pk})
        return _needs_confirmation(request, exc, url, {k: v for k, v in thresholds.items() if v})
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
            user=request.user,
            dataset=dataset,
            minimum=request.POST.get("minimum") or None,
            confirmed_large=_confirmed_large(request),
        )
    except services.NeedsConfirmation as exc:
        url = reverse("labeling:min_per_class_preview", kwargs={"dataset_id": dataset.pk})
        return _needs_confirmation(request, exc, url, {"minimum": request.POST.get("minimum", "")})
    except services.LabelingError as exc:
        messages.error(request, exc.message)
        return redirect("labeling:overview", dataset_id=dataset.pk)
    classes = ", ".join(action.params["classes"]) or "none"
    return _done(request, dataset, f"Minimum per class: {action.face_count} face(s) excluded (classes: {classes}).")


def _split_params(params) -> dict:
    return {
        "seed": params.get("seed", "0") or "0",
        "train": params.get("train", 70),
        "val": params.get("val", 15),
        "test": params.get("test", 15),
    }


@require_GET
def splits_preview(request: HttpRequest, dataset_id: int) -> HttpResponse:
    """What "Assign splits" would do (faces that get or change a split, from where to where, a
    sample), with the Confirm button, as every other bulk change; nothing changes until then."""
    dataset = get_dataset_for(request.user, dataset_id, curate=True)
    params = _split_params(request.GET)
    try:
        preview = services.splits_assign_preview(
            dataset=dataset, seed=params["seed"], ratios=(params["train"], params["val"], params["test"])
        )
    except services.LabelingError as exc:
        messages.error(request, exc.message)
        return redirect("labeling:overview", dataset_id=dataset.pk)
    return render(
        request,
        "labeling/splits_preview.html",
        {
            "dataset": dataset,
            "preview": preview,
            "hidden": params,
            "max_share": round(settings.CURATOR_MAX_ACTION_SHARE * 100, 1),
        },
    )


@require_POST
def splits_assign(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = _curator_post(request, dataset_id)
    params = _split_params(request.POST)
    try:
        action = services.splits_assign(
            user=request.user,
            dataset=dataset,
            seed=params["seed"],
            ratios=(params["train"], params["val"], params["test"]),
            confirmed_large=_confirmed_large(request),
        )
    except services.NeedsConfirmation as exc:
        return _needs_confirmation(request, exc, reverse("labeling:splits_preview", args=[dataset.pk]), params)
    except services.LabelingError as exc:
        messages.error(request, exc.message)
        return redirect("labeling:overview", dataset_id=dataset.pk)
    return _done(
        request, dataset, f"Splits assigned with seed {action.params['seed']}: {action.face_count} face(s) moved."
    )


def _export_choices(dataset: Dataset) -> list[tuple[str, str]]:
    """("dataset", the dataset's own splits) and ("version:<id>", the splits of version N) for
    every version with a snapshot of the splits it was trained with."""
    own = Face.objects.filter(dataset=dataset).exclude(split="").count()
    choices = [("dataset", f"the dataset's own splits ({own} faces have one)")]
    for version in prediction_provider().versions(dataset=dataset):
        if prediction_provider().version_has_splits(model_version=version):
            active = " (active)" if getattr(version, "is_active", False) else ""
            choices.append((f"version:{version.pk}", f"the splits of version {version.number}{active}"))
    return choices


def _export_splits(dataset: Dataset, choice: str) -> tuple[dict[int, str] | None, str]:
    """The face → split map and the zip's name suffix of an export choice (None: the dataset's own)."""
    if not choice.startswith("version:"):
        return None, ""
    try:
        version = prediction_provider().version(dataset=dataset, version_id=int(choice.split(":", 1)[1]))
    except ValueError:
        version = None
    splits = prediction_provider().version_splits(model_version=version) if version is not None else None
    if splits is None:
        raise services.InvalidChange("That model version has no record of its splits to export.")
    return splits, f"v{version.number}-splits"


def export_panel(request: HttpRequest, dataset_id: int) -> HttpResponse:
    """The export form and the exports made so far: on the dataset page (an htmx fragment, as
    curator may not import labeling) and on the curation page."""
    dataset = get_dataset_for(request.user, dataset_id, curate=True)
    return render(request, "labeling/_export.html", _export_context(dataset, back=request.GET.get("back", "")))


def _export_context(dataset: Dataset, *, back: str = "") -> dict:
    choices = _export_choices(dataset)
    own = Face.objects.filter(dataset=dataset).exclude(split="").exists()
    # Without splits of its own (a trained dataset keeps its job's split in the version), the
    # newest version's splits are what a person exporting "the training data" means.
    default = "dataset" if own or len(choices) == 1 else choices[1][0]
    jobs = selectors.export_jobs_unfinished(dataset=dataset)
    return {
        "dataset": dataset,
        "export_choices": choices,
        "export_default": default,
        "exports": selectors.exports_list(dataset=dataset),
        "export_jobs": jobs,
        # While an export runs the panel asks for itself again every 2 s (the progress bar).
        "export_running": any(not job.is_finished for job in jobs),
        "back": back,
    }


@require_POST
def export_create(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = _curator_post(request, dataset_id)
    back = request.POST.get("back", "")
    try:
        choice = request.POST.get("splits", "dataset")
        _, suffix = _export_splits(dataset, choice)  # refuses a version without its splits now
        services.export_job_create(
            user=request.user, dataset=dataset, splits=choice if suffix else "dataset", name_suffix=suffix
        )
        messages.success(request, "Export started: its progress shows below, and the zip is listed when ready.")
    except services.LabelingError as exc:
        messages.error(request, exc.message)
    # Back to the page the form was on: the dataset page, or the curation page.
    if back == reverse("curator:dataset_detail", args=[dataset.pk]):
        return redirect(back)
    return redirect("labeling:overview", dataset_id=dataset.pk)


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
    """Near-duplicate groups (embeddings.duplicates), each pair with its distances."""
    from embeddings import duplicates as tests
    from embeddings.duplicate_jobs import duplicates_request, duplicates_state
    from embeddings.selectors import descriptor_progress

    dataset = get_dataset_for(request.user, dataset_id)
    state = duplicates_state(dataset=dataset)
    if state["status"] == "none":  # the first visit queues the first computation
        duplicates_request(dataset_id=dataset.pk)
        state = duplicates_state(dataset=dataset)
    groups = selectors.duplicate_groups(dataset=dataset)
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
            "only_conflicts": only_conflicts,
            "can_curate": can_curate(request.user, dataset),
            "progress": descriptor_progress(dataset=dataset),
            "state": state,
            "hash_max_bits": tests.HASH_MAX_BITS,
            "same_shot": tests.SAME_SHOT_DISTANCE,
            "max_group": tests.MAX_GROUP,
        },
    )


@require_POST
def duplicates_compute(request: HttpRequest, dataset_id: int) -> HttpResponse:
    """A curator's "compute again": queue the near-duplicate groups of today's descriptors."""
    from embeddings.duplicate_jobs import duplicates_request

    dataset = get_dataset_for(request.user, dataset_id, curate=True)
    duplicates_request(dataset_id=dataset.pk, again=True)
    messages.success(request, "The near-duplicate groups are being computed; this page shows them when they are ready.")
    return redirect("labeling:duplicates", dataset_id=dataset.pk)


def _keep_params(params) -> tuple[str, list[str]]:
    return params.get("keep", ""), [f for f in params.get("faces", "").split(",") if f.strip()]


@require_GET
def duplicates_keep_preview(request: HttpRequest, dataset_id: int) -> HttpResponse:
    """What "keep this one" would exclude (count and thumbnails), with the Confirm button."""
    dataset = get_dataset_for(request.user, dataset_id, curate=True)
    keep, faces = _keep_params(request.GET)
    try:
        kept, others = services.duplicates_keep_check(dataset=dataset, keep=keep, faces=faces)
    except services.LabelingError as exc:
        messages.error(request, exc.message)
        return redirect("labeling:duplicates", dataset_id=dataset.pk)
    total = dataset.faces.count()
    by_id = dataset.faces.only("id", "dataset", "label", "crop").in_bulk([kept, *others])
    return render(
        request,
        "labeling/duplicates_keep_preview.html",
        {
            "dataset": dataset,
            "kept": by_id.get(kept),
            "excluded": [by_id[f] for f in others if f in by_id],
            "count": len(others),
            "faces": ",".join(map(str, [kept, *others])),
            "percent": round(100 * len(others) / total, 1) if total else 0,
            "needs_confirmation": len(others) > settings.CURATOR_MAX_ACTION_SHARE * total,
            "max_share": round(settings.CURATOR_MAX_ACTION_SHARE * 100, 1),
        },
    )


@require_POST
def duplicates_keep(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = get_dataset_for(request.user, dataset_id, curate=True)
    back = reverse("labeling:duplicates", kwargs={"dataset_id": dataset.pk})
    keep, faces = _keep_params(request.POST)
    if request.POST.get("confirm") != "1":
        # Only the preview's Confirm button excludes; an old form goes through the preview first.
        query = urlencode({"keep": keep, "faces": ",".join(faces)})
        return redirect(reverse("labeling:duplicates_keep_preview", kwargs={"dataset_id": dataset.pk}) + "?" + query)
    try:
        action = services.duplicates_keep_one(
            user=request.user, dataset=dataset, keep=keep, faces=faces, confirmed_large=_confirmed_large(request)
        )
    except services.NeedsConfirmation as exc:
        url = reverse("labeling:duplicates_keep_preview", kwargs={"dataset_id": dataset.pk})
        return _needs_confirmation(request, exc, url, {"keep": keep, "faces": ",".join(faces)})
    except services.LabelingError as exc:
        messages.error(request, exc.message)
        return redirect(back)
    messages.success(request, f"Kept face {action.params['kept']}; excluded {action.face_count} duplicate(s).")
    return redirect(back)


# --- Identity clusters ---------------------------------------------------------------------------

IDENTITY_PAGE = 24  # clusters per page of the identities page
CLUSTER_PAGE = 120  # faces per page of one cluster
MIN_SIZES = (1, 2, 5, 20)


@require_GET
def identities(request: HttpRequest, dataset_id: int) -> HttpResponse:
    """The dataset's identity clusters, largest first, in bounded pages: size, labels, known
    names, sample faces, a link to the grid filtered to each; curators merge them here."""
    from embeddings.models import DescriptorSet

    dataset = get_dataset_for(request.user, dataset_id)
    status = HTTPStatus.OK
    min_size = id_param(request.GET.get("min_size", "1"))
    if min_size not in MIN_SIZES:
        messages.error(request, f"Cluster size at least must be one of {', '.join(map(str, MIN_SIZES))}.")
        min_size, status = 1, HTTPStatus.BAD_REQUEST
    summary = selectors.identity_summary(dataset=dataset)
    total = (
        summary["clusters"] if min_size == 1 else selectors.identity_cluster_count(dataset=dataset, min_size=min_size)
    )
    num_pages = max(1, -(-total // IDENTITY_PAGE))
    number = _page_number(request.GET.get("page"))
    if number is None or number > num_pages:
        messages.error(request, f"There is no page “{request.GET.get('page')}” of the identities.")
        number, status = 1, HTTPStatus.NOT_FOUND
    clusters = selectors.identity_clusters_page(
        dataset=dataset, offset=(number - 1) * IDENTITY_PAGE, limit=IDENTITY_PAGE, min_size=min_size
    )
    return render(
        request,
        "labeling/identities.html",
        {
            "dataset": dataset,
            "summary": summary,
            "clusters": clusters,
            "total": total,
            "min_size": min_size,
            "min_sizes": MIN_SIZES,
            "page": {
                "number": number,
                "num_pages": num_pages,
                "has_previous": number > 1,
                "has_next": number < num_pages,
                "previous": number - 1,
                "next": number + 1,
            },
            "page_query": _without(request.GET, "page"),
            # Whether the clusters lag the descriptors (a batch computing, or stored since the
            # last clustering): one row, where counting the dataset's descriptors would read them all.
            "state": DescriptorSet.objects.filter(dataset=dataset)
            .values("stamp", "clusters_stamp", "batches_pending")
            .first(),
            "can_curate": can_curate(request.user, dataset),
        },
        status=status,
    )


@require_GET
def identity_cluster(request: HttpRequest, dataset_id: int, cluster: int) -> HttpResponse:
    """Every face of one cluster (keyset pages by face id, `after`), where a curator picks the
    faces that are another person."""
    dataset = get_dataset_for(request.user, dataset_id)
    after = id_param(request.GET.get("after", "0"))
    if after is None:
        messages.error(request, f"“{request.GET.get('after')}” is not a face id; showing the first faces.")
        after = 0
    summary = selectors.identity_clusters_page(dataset=dataset, offset=0, limit=1, only=cluster)
    if not summary:
        messages.error(
            request,
            f"Identity cluster {cluster} is not a cluster of this dataset (any more: clusters are renumbered "
            "when they are computed again).",
        )
        return redirect("labeling:identities", dataset_id=dataset.pk)
    faces = selectors.identity_cluster_faces(dataset=dataset, cluster=cluster, after=after, limit=CLUSTER_PAGE + 1)
    more = len(faces) > CLUSTER_PAGE
    faces = faces[:CLUSTER_PAGE]
    return render(
        request,
        "labeling/identity_cluster.html",
        {
            "dataset": dataset,
            "c": summary[0],
            "faces": faces,
            "after": after,
            "next_after": faces[-1].pk if more else None,
            "can_curate": can_curate(request.user, dataset),
        },
    )


@require_POST
def identities_merge(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = get_dataset_for(request.user, dataset_id, curate=True)
    back = request.POST.get("back", "")
    url = reverse("labeling:identities", kwargs={"dataset_id": dataset.pk})
    url = url + "?" + back if back and "://" not in back and not back.startswith("/") else url
    try:
        action = services.identities_merge(user=request.user, dataset=dataset, clusters=request.POST.getlist("cluster"))
    except services.LabelingError as exc:
        messages.error(request, exc.message)
        return redirect(url)
    p = action.params
    messages.success(
        request,
        f"Same person: clusters {', '.join(map(str, p['clusters']))} are now cluster {p['into']} "
        f"({p['face_total']} faces). Action #{action.pk} in the history can revert it.",
    )
    return redirect(url)


@require_POST
def identity_split(request: HttpRequest, dataset_id: int, cluster: int) -> HttpResponse:
    dataset = get_dataset_for(request.user, dataset_id, curate=True)
    back = reverse("labeling:identity_cluster", kwargs={"dataset_id": dataset.pk, "cluster": cluster})
    try:
        action = services.identities_split(
            user=request.user, dataset=dataset, cluster=cluster, faces=request.POST.getlist("face")
        )
    except services.LabelingError as exc:
        messages.error(request, exc.message)
        return redirect(back)
    p = action.params
    messages.success(
        request,
        f"Different people: {p['face_total']} face{'s' if p['face_total'] != 1 else ''} left cluster {cluster} "
        f"for cluster {p['new_cluster']}. Action #{action.pk} in the history can revert it.",
    )
    return redirect(back)
