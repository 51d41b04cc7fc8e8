"""Formatting analysis values in templates: numbers to 3 places, intervals, and 'undefined (reason)'."""

from django import template

register = template.Library()


@register.filter
def stat(value, places=3):
    if value is None:
        return "–"
    if isinstance(value, dict) and "undefined" in value:
        return f"undefined ({value['undefined']})"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{int(places)}f}"
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        return f"[{value[0]:.{int(places)}f}, {value[1]:.{int(places)}f}]"
    return value


@register.filter
def pvalue(value):
    if isinstance(value, dict) and "undefined" in value:
        return f"undefined ({value['undefined']})"
    if not isinstance(value, (int, float)):
        return "–"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


@register.filter
def get(mapping, key):
    return mapping.get(key) if isinstance(mapping, dict) else None


@register.filter
def is_undefined(value):
    return isinstance(value, dict) and "undefined" in value


@register.filter
def field(value, key):
    """value[key] for a computed result; an undefined result is passed through to say why."""
    if isinstance(value, dict) and "undefined" not in value:
        return value.get(key)
    return value


@register.filter
def index(sequence, position):
    try:
        return sequence[int(position)]
    except (IndexError, TypeError, ValueError):
        return None
