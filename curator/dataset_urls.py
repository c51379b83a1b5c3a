from django.urls import path

from curator import views

app_name = "curator"
urlpatterns = [
    path("", views.dataset_list, name="dataset_list"),
    path("datasets/new/", views.dataset_create, name="dataset_create"),
    path("datasets/<int:dataset_id>/", views.dataset_detail, name="dataset_detail"),
    path("datasets/<int:dataset_id>/import/", views.dataset_import, name="dataset_import"),
    path("datasets/<int:dataset_id>/realign/", views.dataset_realign, name="dataset_realign"),
    path("datasets/<int:dataset_id>/delete/", views.dataset_delete, name="dataset_delete"),
    path("datasets/<int:dataset_id>/imports/<int:batch_id>/", views.batch_detail, name="batch_detail"),
    path("datasets/<int:dataset_id>/imports/<int:batch_id>/files/", views.batch_files, name="batch_files"),
    path("datasets/<int:dataset_id>/imports/<int:batch_id>/report/", views.batch_report, name="batch_report"),
    path("datasets/<int:dataset_id>/jobs/<int:job_id>/", views.job_detail, name="job_detail"),
    path("datasets/<int:dataset_id>/jobs/<int:job_id>/progress/", views.job_progress, name="job_progress"),
]
