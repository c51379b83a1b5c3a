from django.conf import settings
from django.contrib import admin, messages

from curator.models import AlignmentJob, Dataset, Face, ImportBatch, ImportIssue, Membership, SourceImage
from curator.permissions import can_curate
from curator.services.datasets import dataset_delete


class MembershipInline(admin.TabularInline):
    """Memberships with the rights they give now: a curator membership gives curator rights only
    to a member of the curators group (curator.permissions, the one rule)."""

    model = Membership
    extra = 1
    autocomplete_fields = ["user"]
    fields = ["user", "role", "rights"]
    readonly_fields = ["rights"]

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "role":
            field.help_text = (
                f"Curator rights need this role AND the user in the “{settings.CURATOR_GROUP}” group "
                "(or staff); without the group a curator membership acts as an annotator."
            )
        return field

    @admin.display(description="rights now")
    def rights(self, membership: Membership) -> str:
        if not membership.pk:
            return "-"
        if can_curate(membership.user, membership.dataset):
            return "curator"
        if membership.role == Membership.Role.CURATOR:
            return f"annotator (not in the “{settings.CURATOR_GROUP}” group)"
        return "annotator"


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["name", "classes", "crop_size", "detector", "created_by", "created_at"]
    search_fields = ["name"]
    inlines = [MembershipInline]
    # Apps above curator add their own actions here (training adds "Train a model"); no bulk delete.
    actions: list = []

    def delete_model(self, request, obj: Dataset) -> None:
        """The delete page's way (curator.services.datasets): rows table by table in SQL, files by a
        worker, instead of Django's cascade, which reads every face into Python first."""
        if not dataset_delete(dataset=obj, files_on_worker=True):
            self.message_user(
                request, "Its files will be deleted by the next periodic clean-up (no broker).", messages.WARNING
            )

    def get_deleted_objects(self, objs, request):
        """Counts instead of Django's list of every related row (a million faces would be read and
        listed); what goes is the dataset with all its photos, faces, labels, models and files."""
        summary = []
        for dataset in objs:
            photos = SourceImage.objects.filter(dataset=dataset).count()
            faces = Face.objects.filter(dataset=dataset).count()
            summary.append(f"{dataset.name}: {photos} photos, {faces} faces, their labels, history, models and files")
        return summary, {Dataset._meta.verbose_name_plural: len(summary)}, set(), []


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
    """View and delete only. Faces come from alignment (an edited box would leave its crop,
    landmarks and descriptor behind), and labels change on the labeling pages, which keep the
    history that can be undone."""

    list_display = ["id", "dataset", "image", "index", "label", "split", "is_excluded", "size_px", "sharpness"]
    list_filter = ["dataset", "label", "split", "is_excluded"]
    raw_id_fields = ["image"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(AlignmentJob)
class AlignmentJobAdmin(admin.ModelAdmin):
    list_display = ["id", "dataset", "status", "done", "total", "faces", "no_face", "errors", "created_at"]
    list_filter = ["status"]
