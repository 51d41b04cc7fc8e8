from csp.decorators import csp_update
from django.utils.decorators import method_decorator
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularSwaggerSplitView


@method_decorator(csp_update({"style-src": ["'unsafe-inline'"]}), name="get")
class ApiDocsView(SpectacularSwaggerSplitView):
    """Swagger UI (served from drf-spectacular-sidecar, nothing from a CDN).

    Swagger UI injects <style> elements, so this page alone also allows inline
    styles; scripts stay 'self' only.
    """

    @extend_schema(exclude=True)
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)
