"""The predict page under /predict/ (the API route is in training/predict_api.py)."""

from django.urls import path

from training import predict_views as views

app_name = "predict"
urlpatterns = [
    path("", views.predict_page, name="page"),
]
