"""Dataset pages: list, create, detail, import, import report, alignment job progress, and the
guarded media view. Views parse, call a service or selector, and render."""

from pathlib import PurePosixPath

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from curator import selectors
from curator.forms import DatasetForm, FolderImportForm, UploadForm
from curator.models import AlignmentJob, ImportBatch
from curator.permissions import can_curate, get_dataset_for, is_curator, visible_datasets
from curator.services import alignment, datasets, imports

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
            "class_index": {name: i for i, name in enumerate(dataset.classes)},
            "batches": selectors.dataset_batches(dataset=dataset)[:10],
            "jobs": selectors.dataset_jobs(dataset=dataset)[:10],
            "can_curate": can_curate(request.user, dataset),
        },
    )


@require_http_methods(["GET", "POST"])
def dataset_import(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = get_dataset_for(request.user, dataset_id, curate=True)
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
                return _after_import(request, batch)
    elif request.method == "POST":
        upload_form = UploadForm(request.POST, request.FILES)
        if upload_form.is_valid():
            batch = imports.import_uploads(dataset=dataset, files=upload_form.cleaned_data["files"], user=request.user)
            return _after_import(request, batch)
    return render(
        request,
        "curator/dataset_import.html",
        {
            "dataset": dataset,
            "upload_form": upload_form,
            "folder_form": folder_form,
            "import_roots": imports.import_roots(),
        },
    )


def _after_import(request: HttpRequest, batch: ImportBatch) -> HttpResponse:
    if batch.status == ImportBatch.Status.RECEIVING:
        messages.success(request, f"Importing {batch.source_name} in the background.")
        return redirect("curator:batch_detail", dataset_id=batch.dataset_id, batch_id=batch.pk)
    messages.success(
        request,
        f"Imported {batch.imported_count} photos ({batch.duplicate_count} duplicates, {batch.skipped_count} skipped).",
    )
    return redirect("curator:batch_detail", dataset_id=batch.dataset_id, batch_id=batch.pk)


def batch_detail(request: HttpRequest, dataset_id: int, batch_id: int) -> HttpResponse:
    dataset = get_dataset_for(request.user, dataset_id)
    batch = get_object_or_404(ImportBatch, dataset=dataset, pk=batch_id)
    return render(
        request,
        "curator/batch_detail.html",
        {"dataset": dataset, "batch": batch, "issues": batch.issues.all()[:5000], "jobs": batch.alignment_jobs.all()},
    )


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
    datasets.dataset_delete(dataset=dataset)
    messages.success(request, f"Dataset “{name}” and its files were deleted.")
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
    parts = PurePosixPath(path).parts
    if len(parts) < 3 or parts[0] != "datasets" or not parts[1].isdigit() or ".." in parts:
        raise Http404("No such file.")
    suffix = PurePosixPath(path).suffix.lower()
    content_type = IMAGE_CONTENT_TYPES.get(suffix)
    if content_type is None:
        raise Http404("No such file.")
    if not visible_datasets(request.user).filter(pk=int(parts[1])).exists():
        raise Http404("No such file.")
    try:
        handle = default_storage.open(path, "rb")
    except (FileNotFoundError, OSError) as exc:
        raise Http404("No such file.") from exc
    response = FileResponse(handle, content_type=content_type)
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Content-Disposition"] = f'inline; filename="{PurePosixPath(path).name}"'
    # Crops and originals are written under new names when they change, so caching is safe.
    response["Cache-Control"] = "private, max-age=86400"
    return response
