from django.urls import path

from . import views

urlpatterns = [
    path("", views.PoolListView.as_view(), name="pool-list"),
    path("upload/", views.UploadView.as_view(), name="pool-upload"),
    path("items/<int:pk>/preview.png", views.PoolItemPreviewView.as_view(), name="pool-preview"),
]
