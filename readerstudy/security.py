"""Content Security Policy header (Django 5.2 has none built in).

The viewer is written for it: no inline scripts or styles; Cornerstone's image
loader may compile WebAssembly codecs, hence 'wasm-unsafe-eval' (no 'unsafe-eval').
"""

from django.conf import settings


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        policy = settings.CONTENT_SECURITY_POLICY
        if policy and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = policy
        return response


def policy_with(**directives) -> str:
    """The site policy with some directives replaced, e.g. policy_with(style_src="'self' 'unsafe-inline'")."""
    parts = dict(
        part.strip().split(" ", 1) for part in settings.CONTENT_SECURITY_POLICY.split(";") if part.strip()
    )
    parts.update({name.replace("_", "-"): value for name, value in directives.items()})
    return "; ".join(f"{name} {value}" for name, value in parts.items())
