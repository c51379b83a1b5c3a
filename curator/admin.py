from django.contrib import admin

from curator.models import AlignmentJob, Dataset, Face, ImportBatch, ImportIssue, Membership, SourceImage


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["name", "classes", "crop_size", "detector", "created_by", "created_at"]
    search_fields = ["name"]
    inlines = [MembershipInline]
    # Apps above curator add their own actions here (training adds "Train a model").
    actions: list = []


@admin.register(ImportBatch)
class ImportBatchAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "dataset",
        "source",
        "source_name",
        "imported_count",
        "duplicate_count",
        "skipped_count",
        "created_at",
    ]
    list_filter = ["source", "label_layout"]


@admin.register(ImportIssue)
class ImportIssueAdmin(admin.ModelAdmin):
    list_display = ["batch", "file_name", "kind", "reason"]
    list_filter = ["kind"]


@admin.register(SourceImage)
class SourceImageAdmin(admin.ModelAdmin):
    list_display = ["id", "dataset", "original_name", "status", "face_count", "label"]
    list_filter = ["status", "dataset"]
    search_fields = ["original_name", "sha256"]


@admin.register(Face)
class FaceAdmin(admin.ModelAdmin):
    list_display = ["id", "dataset", "image", "index", "label", "split", "is_excluded", "size_px", "sharpness"]
    list_filter = ["dataset", "label", "split", "is_excluded"]
    raw_id_fields = ["image"]


@admin.register(AlignmentJob)
class AlignmentJobAdmin(admin.ModelAdmin):
    list_display = ["id", "dataset", "status", "done", "total", "faces", "no_face", "errors", "created_at"]
    list_filter = ["status"]
