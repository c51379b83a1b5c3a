from django.urls import path

from training import views

app_name = "training"
urlpatterns = [
    path("datasets/<int:dataset_id>/", views.dataset_training, name="dataset_training"),
    path("datasets/<int:dataset_id>/predictions/", views.predictions_progress, name="predictions_progress"),
    path("datasets/<int:dataset_id>/train/", views.job_create, name="job_create"),
    path("datasets/<int:dataset_id>/compare/", views.version_compare, name="version_compare"),
    path("jobs/<int:job_id>/", views.job_detail, name="job_detail"),
    path("jobs/<int:job_id>/progress/", views.job_progress, name="job_progress"),
    path("jobs/<int:job_id>/curves.svg", views.job_curves, name="job_curves"),
    path("jobs/<int:job_id>/cancel/", views.job_cancel, name="job_cancel"),
    path("versions/<int:version_id>/", views.version_detail, name="version_detail"),
    path("versions/<int:version_id>/plots/<slug:kind>.svg", views.version_plot, name="version_plot"),
    path("versions/<int:version_id>/snapshot.csv", views.version_snapshot, name="version_snapshot"),
    path("versions/<int:version_id>/model-card.zip", views.version_model_card, name="version_model_card"),
    path("versions/<int:version_id>/model-card.md", views.version_model_card_markdown, name="version_model_card_md"),
    path("versions/<int:version_id>/activate/", views.version_activate, name="version_activate"),
    path("versions/<int:version_id>/predict/", views.version_predict, name="version_predict"),
]
