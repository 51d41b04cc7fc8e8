from django.contrib.auth import views as auth_views
from django.forms.utils import ErrorDict

from . import throttle


class ThrottledLoginView(auth_views.LoginView):
    """Django's login page, refusing further attempts for a while after repeated failures."""

    def get_context_data(self, **kwargs):
        # The admin's template says who is logged in but not authorised ("You are authenticated as ...").
        return super().get_context_data(username=self.request.user.get_username(), **kwargs)

    def post(self, request, *args, **kwargs):
        username, address = request.POST.get("username", ""), throttle.client_address(request)
        if throttle.is_locked(username, address):
            # A bound form with only our error: the password is not even checked.
            form = self.get_form_class()(request, data=request.POST)
            form._errors, form.cleaned_data = ErrorDict(), {}
            form.add_error(None, f"Too many failed log-ins. Try again in {throttle.WINDOW_SECONDS // 60} minutes.")
            response = self.render_to_response(self.get_context_data(form=form))
            response.status_code = 429
            return response
        response = super().post(request, *args, **kwargs)
        if request.user.is_authenticated:
            throttle.clear(username, address)
        else:
            throttle.record_failure(username, address)
        return response
