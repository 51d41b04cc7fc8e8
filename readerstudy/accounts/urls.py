from django.contrib.auth import views as auth_views
from django.urls import path

from . import views

urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("set-password/<uidb64>/<token>/", views.SetPasswordView.as_view(), name="set-password"),
    path("readers/", views.ReaderListView.as_view(), name="reader-list"),
    path("readers/<int:pk>/invite/", views.ReaderReinviteView.as_view(), name="reader-reinvite"),
    path("readers/<int:pk>/active/", views.ReaderActiveView.as_view(), name="reader-active"),
]
