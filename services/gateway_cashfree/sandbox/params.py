"""Reading request fields by hand, after the OpenAPI check: the rules the document only states in
prose ("Possible values - PERIODIC, ON_DEMAND"), and a second line of defence that keeps the
handlers safe when the document is absent. Every failure is the 400 Cashfree answers, naming the
field by its dotted path.
"""
import re
from decimal import Decimal
from typing import Iterable, Optional

from . import money, periods
from .errors import invalid_value, missing

_ABSENT = object()


def _get(body: dict, name: str, prefix: str, required: bool):
    value = body.get(name, _ABSENT) if isinstance(body, dict) else _ABSENT
    if value is _ABSENT or value is None:
        if required:
            raise missing(prefix + name)
        return _ABSENT
    return value


def text(body: dict, name: str, prefix: str = "", *, required: bool = False, default: Optional[str] = None,
         max_length: Optional[int] = None, pattern: Optional[str] = None, why: str = "") -> Optional[str]:
    value = _get(body, name, prefix, required)
    if value is _ABSENT:
        return default
    if not isinstance(value, str):
        raise invalid_value(prefix + name, "Expected string")
    if required and not value.strip():
        raise missing(prefix + name)
    if max_length is not None and len(value) > max_length:
        raise invalid_value(prefix + name, f"At most {max_length} characters are allowed")
    if pattern and not re.fullmatch(pattern, value):
        raise invalid_value(prefix + name, why)
    return value


def choice(body: dict, name: str, options: Iterable[str], prefix: str = "", *, required: bool = False,
           default: Optional[str] = None) -> Optional[str]:
    options = tuple(options)
    value = text(body, name, prefix, required=required)
    if value is None:
        return default
    if value.upper() not in options:
        raise invalid_value(prefix + name, "Possible values - " + ", ".join(options))
    return value.upper()


def integer(body: dict, name: str, prefix: str = "", *, required: bool = False, default: Optional[int] = None,
            minimum: int = 0) -> Optional[int]:
    value = _get(body, name, prefix, required)
    if value is _ABSENT:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid_value(prefix + name, "Expected integer")
    if value < minimum:
        raise invalid_value(prefix + name, f"Must be at least {minimum}")
    return value


def amount(body: dict, name: str, prefix: str = "", *, required: bool = False,
           default: Optional[Decimal] = None) -> Optional[Decimal]:
    value = _get(body, name, prefix, required)
    if value is _ABSENT:
        return default
    return money.amount(value, prefix + name)


def boolean(body: dict, name: str, prefix: str = "", *, default: bool = False) -> bool:
    value = _get(body, name, prefix, False)
    if value is _ABSENT:
        return default
    if not isinstance(value, bool):
        raise invalid_value(prefix + name, "Expected boolean")
    return value


def obj(body: dict, name: str, prefix: str = "", *, required: bool = False) -> Optional[dict]:
    value = _get(body, name, prefix, required)
    if value is _ABSENT:
        return None
    if not isinstance(value, dict):
        raise invalid_value(prefix + name, "Expected object")
    return value


def strings(body: dict, name: str, options: Iterable[str], prefix: str = "") -> list:
    value = _get(body, name, prefix, False)
    if value is _ABSENT:
        return []
    options = tuple(options)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise invalid_value(prefix + name, "Expected an array of strings")
    for item in value:
        if item.lower() not in options:
            raise invalid_value(prefix + name, f"'{item}' is not one of " + ", ".join(options))
    return [item.lower() for item in value]


def time_text(body: dict, name: str, prefix: str = "") -> Optional[str]:
    """An RFC 3339 time kept as the caller wrote it; 400 if it does not parse."""
    value = text(body, name, prefix)
    if value and periods.parse(value) is None:
        raise invalid_value(prefix + name, "Expected a time such as 2025-01-31T10:00:00+05:30")
    return value or None
