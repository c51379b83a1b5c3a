"""Read-only views of the label history for staff: changes are made through the labeling pages
and services (so every one is an event), never by editing these rows."""

from django.contrib import admin

from labeling.models import BulkAction, LabelEvent


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(BulkAction)
class BulkActionAdmin(ReadOnlyAdmin):
    list_display = ["id", "dataset", "kind", "user", "face_count", "reverts", "created_at"]
    list_filter = ["kind", "dataset"]
    date_hierarchy = "created_at"


@admin.register(LabelEvent)
class LabelEventAdmin(ReadOnlyAdmin):
    list_display = ["id", "face_id", "field", "old_value", "new_value", "user", "action_id", "created_at"]
    list_filter = ["field"]
    raw_id_fields = ["face", "action"]
    list_select_related = ["user"]
