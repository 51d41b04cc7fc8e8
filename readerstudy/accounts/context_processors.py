from .roles import ANALYST, COORDINATOR, READER, has_role


def roles(request):
    """Expose the user's roles to templates (navigation only; views check again)."""
    user = getattr(request, "user", None)
    if user is None:
        return {}
    return {
        "is_reader": has_role(user, READER),
        "is_coordinator": has_role(user, COORDINATOR),
        "is_analyst": has_role(user, ANALYST),
    }
