"""Review queues under /review/<dataset>/ (included from curator/urls.py)."""

from django.urls import path

from review import views

app_name = "review"
urlpatterns = [
    path("<int:dataset_id>/", views.index, name="index"),
    path("<int:dataset_id>/versions/<int:version_id>/", views.version_queue, name="version_queue"),
    path("<int:dataset_id>/versions/<int:version_id>/unlabelled/", views.active_queue, name="active_queue"),
    path("<int:dataset_id>/versions/<int:version_id>/suggestions/", views.suggestions, name="suggestions"),
    path(
        "<int:dataset_id>/versions/<int:version_id>/suggestions/accept",
        views.suggestions_accept,
        name="suggestions_accept",
    ),
    path("<int:dataset_id>/versions/<int:version_id>/retrain", views.retrain, name="retrain"),
    path("<int:dataset_id>/runs/start", views.run_start, name="run_start"),
    path("<int:dataset_id>/runs/<int:run_id>/", views.run_queue, name="run_queue"),
    path("<int:dataset_id>/runs/<int:run_id>/status", views.run_status, name="run_status"),
]
