"""Labeling's pages. Included at the site root (curator/urls.py) so that labeling owns both its
pages under /labeling/ and the shareable face page under /datasets/<id>/faces/<id>/, next to the
dataset pages, without curator importing labeling."""

from django.urls import include, path

from labeling import map_views, views

app_name = "labeling"
pages = [
    path("<int:dataset_id>/", views.grid, name="grid"),
    path("<int:dataset_id>/map/", map_views.dataset_map, name="map"),
    path("<int:dataset_id>/faces/<int:face_id>/", views.face_detail, name="face_detail"),
    path("<int:dataset_id>/history/", views.history, name="history"),
    path("<int:dataset_id>/history/<int:action_id>/revert/", views.revert, name="revert"),
    path("<int:dataset_id>/curate/", views.overview, name="overview"),
    path("<int:dataset_id>/curate/keys/", views.class_keys_set, name="class_keys_set"),
    path("<int:dataset_id>/curate/rules/", views.rule_apply, name="rule_apply"),
    path("<int:dataset_id>/curate/rules/preview/", views.rule_preview, name="rule_preview"),
    path("<int:dataset_id>/curate/min-per-class/", views.min_per_class_apply, name="min_per_class_apply"),
    path("<int:dataset_id>/curate/min-per-class/preview/", views.min_per_class_preview, name="min_per_class_preview"),
    path("<int:dataset_id>/curate/splits/", views.splits_assign, name="splits_assign"),
    path("<int:dataset_id>/curate/splits/preview/", views.splits_preview, name="splits_preview"),
    path("<int:dataset_id>/exports/panel/", views.export_panel, name="export_panel"),
    path("<int:dataset_id>/curate/exports/", views.export_create, name="export_create"),
    path("<int:dataset_id>/curate/exports/<str:name>", views.export_download, name="export_download"),
    path("<int:dataset_id>/identities/", views.identities, name="identities"),
    path("<int:dataset_id>/identities/merge/", views.identities_merge, name="identities_merge"),
    path("<int:dataset_id>/identities/<int:cluster>/", views.identity_cluster, name="identity_cluster"),
    path("<int:dataset_id>/identities/<int:cluster>/split/", views.identity_split, name="identity_split"),
    path("<int:dataset_id>/duplicates/", views.duplicates, name="duplicates"),
    path("<int:dataset_id>/duplicates/compute/", views.duplicates_compute, name="duplicates_compute"),
    path("<int:dataset_id>/duplicates/keep/", views.duplicates_keep, name="duplicates_keep"),
    path("<int:dataset_id>/duplicates/keep/preview/", views.duplicates_keep_preview, name="duplicates_keep_preview"),
]
urlpatterns = [
    path("labeling/", include(pages)),
    path("datasets/<int:dataset_id>/faces/<int:face_id>/", views.face_page, name="face"),
]
