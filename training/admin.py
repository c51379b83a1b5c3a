"""Admin for training, and the "Train a model" action on datasets, which asks for the architecture
and settings on a small intermediate form. Training adds the action to curator's DatasetAdmin
itself (below), so curator never imports training."""

from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from curator.admin import DatasetAdmin
from curator.permissions import can_curate
from training import guidance, services
from training.config import ConfigError
from training.data import TrainingDataError
from training.forms import TrainingJobForm
from training.models import ModelVersion, Prediction, TrainingJob


@admin.action(description="Train a model on the selected datasets")
def train_on_dataset(modeladmin, request, queryset):
    datasets = list(queryset)
    refused = [ds.name for ds in datasets if not can_curate(request.user, ds)]
    if refused:
        modeladmin.message_user(
            request, f"Only curators may train; you do not curate {', '.join(refused)}.", messages.ERROR
        )
        return None
    # Ensemble members are versions of one dataset: offered only when one dataset is selected.
    form = TrainingJobForm(
        request.POST if "apply" in request.POST else None, dataset=datasets[0] if len(datasets) == 1 else None
    )
    if "apply" in request.POST and form.is_valid():
        architecture = form.cleaned_data["architecture"]
        for ds in datasets:
            why = guidance.architecture_unavailable(architecture=architecture, classes=list(ds.classes))
            if why:
                modeladmin.message_user(request, f"{ds.name}: not queued. {why}", messages.ERROR)
                continue
            try:
                job = services.training_job_create(
                    dataset=ds,
                    user=request.user,
                    architecture=architecture,
                    config=form.cleaned_data["overrides"],
                    keep_best_on_cancel=form.cleaned_data["keep_best_on_cancel"],
                )
            except (TrainingDataError, ConfigError) as exc:
                modeladmin.message_user(request, f"{ds.name}: not queued. {exc}", messages.ERROR)
            else:
                url = reverse("training:job_detail", args=[job.pk])
                modeladmin.message_user(
                    request,
                    format_html('{}: <a href="{}">training job {}</a> queued.', ds.name, url, job.pk),
                    messages.SUCCESS,
                )
                n_faces = guidance.dataset_guidance(dataset=ds).n_faces
                warning = guidance.architecture_warning(architecture=architecture, n_faces=n_faces)
                if warning:
                    modeladmin.message_user(request, f"{ds.name}: {warning}", messages.WARNING)
        return None
    return TemplateResponse(
        request,
        "training/admin_train.html",
        {
            **modeladmin.admin_site.each_context(request),
            "form": form,
            "datasets": datasets,
            "advice": [(ds, guidance.dataset_guidance(dataset=ds)) for ds in datasets],
            "action": "train_on_dataset",
        },
    )


if train_on_dataset not in DatasetAdmin.actions:
    DatasetAdmin.actions = [*DatasetAdmin.actions, train_on_dataset]


@admin.register(TrainingJob)
class TrainingJobAdmin(admin.ModelAdmin):
    list_display = ["id", "dataset", "architecture", "status", "epoch", "epochs", "created_by", "created_at"]
    list_filter = ["status", "architecture"]
    readonly_fields = ["history", "log", "timings", "heartbeat_at", "started_at", "finished_at"]


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["id", "dataset", "number", "architecture", "is_active", "created_at"]
    list_filter = ["architecture", "is_active"]
    readonly_fields = ["metrics", "config", "classes", "artifact", "snapshot"]


@admin.register(Prediction)
class PredictionAdmin(admin.ModelAdmin):
    list_display = ["id", "face", "model_version", "predicted_label", "confidence", "disagrees"]
    list_filter = ["disagrees"]
    raw_id_fields = ["face", "model_version"]
