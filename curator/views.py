"""Dataset pages: list, create, detail, import, import report, alignment job progress, and the
guarded media view. Views parse, call a service or selector, and render."""

import logging
from pathlib import PurePosixPath

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied, RequestDataTooBig, TooManyFilesSent
from django.core.files.storage import default_storage
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods, require_POST

from curator import selectors
from curator.forms import DatasetForm, FolderImportForm, UploadForm
from curator.models import AlignmentJob, Dataset, ImportBatch
from curator.params import id_param
from curator.permissions import can_curate, get_dataset_for, is_curator, visible_datasets
from curator.services import alignment, datasets, imports
from curator.storage import STORAGE_ERRORS
from curator.uploads import SmallFilesInMemoryUploadHandler

# Media files are only ever answered as images: anything else in storage is not served here.
IMAGE_CONTENT_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
}

logger = logging.getLogger(__name__)


def dataset_list(request: HttpRequest) -> HttpResponse:
    rows = [(ds, selectors.dataset_summary(dataset=ds)) for ds in visible_datasets(request.user)]
    return render(request, "curator/dataset_list.html", {"rows": rows, "can_create": is_curator(request.user)})


@require_http_methods(["GET", "POST"])
def dataset_create(request: HttpRequest) -> HttpResponse:
    if not is_curator(request.user):
        raise PermissionDenied("Only curators may create datasets.")
    form = DatasetForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        dataset = datasets.dataset_create(
            user=request.user, classes=form.cleaned_data["classes_text"], **_dataset_fields(form)
        )
        messages.success(request, f"Dataset “{dataset.name}” created. Import some photos next.")
        return redirect("curator:dataset_import", dataset_id=dataset.pk)
    return render(request, "curator/dataset_form.html", {"form": form})


def _dataset_fields(form: DatasetForm) -> dict:
    return {name: form.cleaned_data[name] for name in DatasetForm.Meta.fields}


def dataset_detail(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = get_dataset_for(request.user, dataset_id)
    page = Paginator(selectors.dataset_faces(dataset=dataset), 120).get_page(request.GET.get("page"))
    return render(
        request,
        "curator/dataset_detail.html",
        {
            "dataset": dataset,
            "summary": selectors.dataset_summary(dataset=dataset),
            "page": page,
            "batches": selectors.dataset_batches(dataset=dataset)[:10],
            "jobs": selectors.dataset_jobs(dataset=dataset)[:10],
            "can_curate": can_curate(request.user, dataset),
        },
    )


# --- Import -----------------------------------------------------------------------------------------
# Upload views are csrf_exempt on the outside only so that the size of a request is checked
# before anything reads its body (the CSRF check reads the form); the inner view is
# csrf_protect'ed as every other form (Django's documented pattern for upload handlers).

MB = 1024 * 1024


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _error_json(message: str, *, status: int, code: str, fields: dict | None = None) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message, "fields": fields or {}}}, status=status)


def _upload_refusal(request: HttpRequest) -> str:
    """Why this upload request is refused as a whole ('' if it is not): more bytes than
    CURATOR_MAX_REQUEST_BYTES (seen from Content-Length, before the body is read) or more files
    than DATA_UPLOAD_MAX_NUMBER_FILES."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    limit = settings.CURATOR_MAX_REQUEST_BYTES
    if length > limit:
        return (
            f"This upload is {length / MB:,.1f} MB, more than the {limit / MB:,.0f} MB one request may carry "
            "(CURATOR_MAX_REQUEST_BYTES). Nothing was stored. Send the photos in smaller groups (the upload page "
            "does so by itself when JavaScript is on), or import a server folder."
        )
    # Many small files stay in memory rather than becoming one temporary file each.
    request.upload_handlers = [SmallFilesInMemoryUploadHandler(request)]
    try:
        request.FILES  # noqa: B018 (parses the body now, so its limits are reported here)
    except TooManyFilesSent:
        return (
            f"More than {settings.DATA_UPLOAD_MAX_NUMBER_FILES:,} files in one request (CURATOR_MAX_UPLOAD_FILES). "
            "Nothing was stored. Send them in smaller groups, as a .zip, or import a server folder."
        )
    except RequestDataTooBig:
        return "The form fields of this request are larger than DATA_UPLOAD_MAX_MEMORY_SIZE. Nothing was stored."
    return ""


@csrf_exempt
@require_http_methods(["GET", "POST"])
def dataset_import(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = get_dataset_for(request.user, dataset_id, curate=True)
    if request.method == "POST" and (refusal := _upload_refusal(request)):
        if _wants_json(request):
            return _error_json(refusal, status=413, code="upload_too_large")
        return _import_page(request, dataset, UploadForm(), FolderImportForm(), refusal=refusal, status=413)
    return _dataset_import(request, dataset)


@csrf_protect
def _dataset_import(request: HttpRequest, dataset: Dataset) -> HttpResponse:
    upload_form = UploadForm()
    folder_form = FolderImportForm()
    if request.method == "POST" and "path" in request.POST:
        folder_form = FolderImportForm(request.POST)
        if folder_form.is_valid():
            try:
                batch = imports.import_folder_start(
                    dataset=dataset, path=folder_form.cleaned_data["path"], user=request.user
                )
            except imports.ImportRefused as exc:
                folder_form.add_error("path", str(exc))
            else:
                messages.success(request, f"Importing {batch.source_name} in the background.")
                return redirect("curator:batch_detail", dataset_id=dataset.pk, batch_id=batch.pk)
    elif request.method == "POST":
        upload_form = UploadForm(request.POST, request.FILES)
        if upload_form.is_valid():
            batch = imports.import_upload_stage(
                dataset=dataset,
                files=upload_form.cleaned_data["files"],
                user=request.user,
                more=request.POST.get("more") == "1",
            )
            return _upload_received(request, batch)
        if _wants_json(request):
            return _error_json(
                "No photos in this upload.", status=400, code="invalid", fields=dict(upload_form.errors.items())
            )
    return _import_page(request, dataset, upload_form, folder_form)


def _import_page(request, dataset, upload_form, folder_form, *, refusal: str = "", status: int = 200) -> HttpResponse:
    return render(
        request,
        "curator/dataset_import.html",
        {
            "dataset": dataset,
            "upload_form": upload_form,
            "folder_form": folder_form,
            "import_roots": imports.import_roots(),
            "refusal": refusal,
            "upload_max_bytes": settings.CURATOR_MAX_REQUEST_BYTES,
            "upload_max_files": settings.DATA_UPLOAD_MAX_NUMBER_FILES,
            "file_max_bytes": settings.CURATOR_MAX_UPLOAD_BYTES,
        },
        status=status,
    )


def _upload_received(request: HttpRequest, batch: ImportBatch) -> HttpResponse:
    report_url = reverse("curator:batch_detail", args=[batch.dataset_id, batch.pk])
    if _wants_json(request):
        return JsonResponse(
            {
                "batch": batch.pk,
                "number": batch.number,
                "status": batch.status,
                "received": batch.staged_count,
                "report_url": report_url,
                "append_url": reverse("curator:batch_files", args=[batch.dataset_id, batch.pk]),
            },
            status=202,
        )
    messages.success(request, f"Received {batch.staged_count} files; they are imported in the background.")
    return redirect(report_url)


@csrf_exempt
@require_POST
def batch_files(request: HttpRequest, dataset_id: int, batch_id: int) -> HttpResponse:
    """More files of an upload the browser sends in several requests (static/curator/upload.js);
    `more=0` with the last part starts the import."""
    dataset = get_dataset_for(request.user, dataset_id, curate=True)
    batch = get_object_or_404(ImportBatch, dataset=dataset, pk=batch_id)
    if batch.created_by_id != request.user.pk:
        return _error_json("Only the person who started this upload may add files to it.", status=403, code="forbidden")
    if refusal := _upload_refusal(request):
        return _error_json(refusal, status=413, code="upload_too_large")
    return _batch_files(request, dataset, batch)


@csrf_protect
def _batch_files(request: HttpRequest, dataset: Dataset, batch: ImportBatch) -> HttpResponse:
    form = UploadForm(request.POST, request.FILES)
    if not form.is_valid():
        return _error_json("No photos in this part.", status=400, code="invalid", fields=dict(form.errors.items()))
    try:
        batch = imports.import_upload_stage(
            dataset=dataset,
            files=form.cleaned_data["files"],
            user=request.user,
            batch=batch,
            more=request.POST.get("more") == "1",
        )
    except imports.ImportRefused as exc:
        return _error_json(str(exc), status=409, code="upload_closed")
    return _upload_received(request, batch)


def batch_detail(request: HttpRequest, dataset_id: int, batch_id: int) -> HttpResponse:
    dataset = get_dataset_for(request.user, dataset_id)
    batch = get_object_or_404(ImportBatch, dataset=dataset, pk=batch_id)
    return render(request, "curator/batch_detail.html", _batch_context(dataset, batch))


def batch_report(request: HttpRequest, dataset_id: int, batch_id: int) -> HttpResponse:
    """Polled by the import report (htmx) while the import or its alignment runs; JSON for API
    clients and tests."""
    dataset = get_dataset_for(request.user, dataset_id)
    batch = get_object_or_404(ImportBatch, dataset=dataset, pk=batch_id)
    context = _batch_context(dataset, batch)
    if request.headers.get("HX-Request"):
        return render(request, "curator/_batch_report.html", context)
    report = dict(context["report"])
    report.pop("job_objects")
    return JsonResponse(report)


def _batch_context(dataset: Dataset, batch: ImportBatch) -> dict:
    report = selectors.batch_report(batch=batch)
    issues = batch.issues.all()[: selectors.BATCH_ISSUES_SHOWN]
    return {"dataset": dataset, "batch": batch, "report": report, "issues": issues, "jobs": report["job_objects"]}


@require_POST
def dataset_realign(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = get_dataset_for(request.user, dataset_id, curate=True)
    only_failed = request.POST.get("scope") == "failed"
    images = dataset.images.all()
    if only_failed:
        images = images.exclude(status="aligned")
    if not images.exists():
        messages.error(request, "There are no images to align.")
        return redirect("curator:dataset_detail", dataset_id=dataset.pk)
    job = alignment.alignment_job_start(dataset=dataset, images=images, user=request.user)
    return redirect("curator:job_detail", dataset_id=dataset.pk, job_id=job.pk)


@require_POST
def dataset_delete(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = get_dataset_for(request.user, dataset_id, curate=True)
    if request.POST.get("confirm_name") != dataset.name:
        messages.error(request, "Type the dataset's name to confirm deletion.")
        return redirect("curator:dataset_detail", dataset_id=dataset.pk)
    name = dataset.name
    if datasets.dataset_delete(dataset=dataset, files_on_worker=True):
        messages.success(request, f"Dataset “{name}” was deleted; a worker is deleting its files.")
    else:
        messages.warning(
            request, f"Dataset “{name}” was deleted; its files will be deleted by the next periodic clean-up."
        )
    return redirect("curator:dataset_list")


def job_detail(request: HttpRequest, dataset_id: int, job_id: int) -> HttpResponse:
    dataset = get_dataset_for(request.user, dataset_id)
    job = get_object_or_404(AlignmentJob, dataset=dataset, pk=job_id)
    return render(
        request,
        "curator/job_detail.html",
        {"dataset": dataset, "job": job, "progress": selectors.job_progress(job=job)},
    )


def job_progress(request: HttpRequest, dataset_id: int, job_id: int) -> HttpResponse:
    """Polled by the job page (htmx) every second; JSON for API clients and tests."""
    dataset = get_dataset_for(request.user, dataset_id)
    job = get_object_or_404(AlignmentJob, dataset=dataset, pk=job_id)
    progress = selectors.job_progress(job=job)
    if request.headers.get("HX-Request"):
        response = render(request, "curator/_job_progress.html", {"dataset": dataset, "job": job, "progress": progress})
        if progress["finished"]:
            response["HX-Trigger"] = "jobFinished"
        return response
    return JsonResponse(progress)


def media_file(request: HttpRequest, path: str) -> HttpResponse:
    """Serve an image from storage to someone who may see its dataset. Paths look like
    datasets/<id>/...; only image types are ever answered, never HTML or scripts."""
    # NUL (and any control character) names no file: storage backends raise ValueError on it.
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise Http404("No such file.")
    parts = PurePosixPath(path).parts
    if len(parts) < 3 or parts[0] != "datasets" or id_param(parts[1]) is None or ".." in parts:
        raise Http404("No such file.")
    suffix = PurePosixPath(path).suffix.lower()
    content_type = IMAGE_CONTENT_TYPES.get(suffix)
    if content_type is None:
        raise Http404("No such file.")
    if not visible_datasets(request.user).filter(pk=id_param(parts[1])).exists():
        raise Http404("No such file.")
    try:
        handle = default_storage.open(path, "rb")
    except FileNotFoundError as exc:
        raise Http404("No such file.") from exc
    except STORAGE_ERRORS:
        logger.warning("storage failed to open %s", path, exc_info=True)
        return HttpResponse(
            "The file storage is unavailable; try again shortly.", status=503, content_type="text/plain"
        )
    response = FileResponse(handle, content_type=content_type)
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Content-Disposition"] = f'inline; filename="{PurePosixPath(path).name}"'
    # Crops and originals are written under new names when they change, so caching is safe.
    response["Cache-Control"] = "private, max-age=86400"
    return response
