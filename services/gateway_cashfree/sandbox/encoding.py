"""JSON with exact decimal amounts, both ways.

Cashfree's amounts are JSON numbers in rupees (`1499.5`). Reading them as floats would turn
0.1 + 0.2 into 0.30000000000000004, so bodies are parsed with Decimal, and everything the sandbox
writes goes through `dumps`, which renders a Decimal as the exact number it is (an integer when
whole). The text `dumps` returns is also what webhook signatures are computed over.
"""
import json
from decimal import Decimal
from typing import Any

_string = json.JSONEncoder(ensure_ascii=False).encode


class JSONBodyError(ValueError):
    pass


def loads(text) -> Any:
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    return json.loads(text, parse_float=Decimal, parse_constant=_no_constants)


def _no_constants(name: str):
    raise JSONBodyError(f"{name} is not a JSON number")


def dumps(obj: Any, sort_keys: bool = False) -> str:
    out: list = []
    _encode(obj, out, sort_keys)
    return "".join(out)


def render_decimal(value: Decimal) -> str:
    if not value.is_finite():
        raise ValueError(f"{value} is not a JSON number")
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def _encode(obj: Any, out: list, sort_keys: bool) -> None:
    if obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, str):
        out.append(_string(obj))
    elif isinstance(obj, Decimal):
        out.append(render_decimal(obj))
    elif isinstance(obj, int):
        out.append(str(int(obj)))
    elif isinstance(obj, float):
        out.append(json.dumps(obj))
    elif isinstance(obj, dict):
        items = sorted(obj.items()) if sort_keys else obj.items()
        out.append("{")
        for index, (key, value) in enumerate(items):
            if index:
                out.append(",")
            out.append(_string(str(key)))
            out.append(":")
            _encode(value, out, sort_keys)
        out.append("}")
    elif isinstance(obj, (list, tuple)):
        out.append("[")
        for index, value in enumerate(obj):
            if index:
                out.append(",")
            _encode(value, out, sort_keys)
        out.append("]")
    else:
        raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
