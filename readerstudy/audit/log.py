"""Recording audit events; domain functions call `record`, so pages and API are logged alike."""

from .models import AuditEvent


def record(action: str, actor=None, study=None, target: str = "", **details) -> AuditEvent:
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    return AuditEvent.objects.create(action=action, actor=actor, study=study, target=target[:200], details=details)
