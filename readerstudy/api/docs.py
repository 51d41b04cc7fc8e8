from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularSwaggerSplitView

from readerstudy.security import policy_with


class ApiDocsView(SpectacularSwaggerSplitView):
    """Swagger UI (served from drf-spectacular-sidecar, nothing from a CDN).

    Swagger UI injects <style> elements, so this page alone also allows inline
    styles; scripts stay 'self' only.
    """

    @extend_schema(exclude=True)
    def get(self, request, *args, **kwargs):
        response = super().get(request, *args, **kwargs)
        response["Content-Security-Policy"] = policy_with(style_src="'self' 'unsafe-inline'")
        return response
