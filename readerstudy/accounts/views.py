"""Log-in and set-password pages, and the coordinators' reader-account pages."""

from django.conf import settings
from django.contrib import messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.mixins import PermissionRequiredMixin
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse_lazy
from django.utils.cache import patch_cache_control
from django.views.generic import FormView, View

from .forms import ReaderInviteForm
from .permissions import MANAGE_READERS
from .readers import (
    ReaderAccountError, invite_reader, managed_reader_accounts, reinvite_reader, set_reader_active,
)


def lockout_message() -> str:
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    return f"Too many failed log-ins. Try again in {minutes} minutes."


class LockoutAwareForm(AuthenticationForm):
    """When django-axes refused the attempt, say so instead of "wrong password" (the password was not checked)."""

    def get_invalid_login_error(self):
        if getattr(self.request, "axes_locked_out", False):
            return ValidationError(lockout_message(), code="locked_out")
        return super().get_invalid_login_error()


class AdminLoginForm(LockoutAwareForm, AdminAuthenticationForm):
    pass


def locked_out(request, response=None, credentials=None) -> HttpResponse:
    """django-axes' lock-out response: the page or API answer already written, as 429 Too Many Requests."""
    if response is None:
        response = HttpResponse(lockout_message(), content_type="text/plain")
    response.status_code = 429
    return response


class LoginView(auth_views.LoginView):
    form_class = LockoutAwareForm

    def get_context_data(self, **kwargs):
        # The admin's template says who is logged in but not authorised ("You are authenticated as ...").
        return super().get_context_data(username=self.request.user.get_username(), **kwargs)


class SetPasswordView(auth_views.PasswordResetConfirmView):
    """An invitation's one-time link: the reader chooses a password, then logs in."""

    template_name = "registration/set_password.html"
    success_url = reverse_lazy("login")

    def get_user(self, uidb64):
        user = super().get_user(uidb64)
        return user if user is not None and user.is_active else None

    def form_valid(self, form):
        response = super().form_valid(form)
        messages.success(self.request, "Your password is set. Log in with it.")
        return response


class ReaderListView(PermissionRequiredMixin, FormView):
    """Reader accounts and the invitation form; an invitation's link is shown once, on the reply."""

    permission_required = MANAGE_READERS
    template_name = "accounts/reader_list.html"
    form_class = ReaderInviteForm

    def get_context_data(self, **kwargs):
        return super().get_context_data(readers=managed_reader_accounts(), **kwargs)

    def form_valid(self, form):
        try:
            invitation = invite_reader(by=self.request.user, base_url=self.request.build_absolute_uri("/"),
                                       **form.cleaned_data)
        except ReaderAccountError as exc:
            form.add_error(None, str(exc))
            return self.form_invalid(form)
        return invitation_page(self.request, invitation, new=True)


def invitation_page(request, invitation, new: bool) -> HttpResponse:
    response = render(request, "accounts/invitation.html", {"invitation": invitation, "new": new})
    patch_cache_control(response, no_store=True)  # the link is a credential
    return response


def _reader(pk):
    return get_object_or_404(get_user_model(), pk=pk)


class ReaderReinviteView(PermissionRequiredMixin, View):
    permission_required = MANAGE_READERS

    def post(self, request, pk):
        try:
            invitation = reinvite_reader(_reader(pk), by=request.user, base_url=request.build_absolute_uri("/"))
        except ReaderAccountError as exc:
            messages.error(request, str(exc))
            return redirect("reader-list")
        return invitation_page(request, invitation, new=False)


class ReaderActiveView(PermissionRequiredMixin, View):
    """Deactivate or reactivate a reader (POST `active` = 0 or 1)."""

    permission_required = MANAGE_READERS

    def post(self, request, pk):
        user, active = _reader(pk), request.POST.get("active") == "1"
        try:
            changed = set_reader_active(user, active, by=request.user)
        except ReaderAccountError as exc:
            messages.error(request, str(exc))
        else:
            if changed:
                messages.success(request, f"{user.username} {'reactivated' if active else 'deactivated'}.")
        return redirect("reader-list")
