"""Stripe's request parameters: `a[b][0][c]=v` form fields -> nested dicts and lists, then checked.

Every endpoint declares the parameters it understands (a "shape"); anything else is refused with
Stripe's own "Received unknown parameter" error, so an adapter that sends a misspelt or unsupported
field fails here as it would at Stripe instead of being silently ignored.
"""
import re
from typing import Any, Iterable, Tuple

from .errors import invalid, missing_param

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")


def decode(pairs: Iterable[Tuple[str, str]]) -> dict:
    """Form pairs (in order) -> nested structure; numeric keys become lists, `[]` appends."""
    root: dict = {}
    for key, value in pairs:
        match = _KEY.match(key)
        if not match:
            raise invalid(f"Invalid parameter name: {key}", param=key)
        path = [match.group(1)] + _SEGMENT.findall(match.group(2))
        node = root
        for depth, segment in enumerate(path):
            if segment == "":  # `expand[]=a&expand[]=b`: append
                segment = str(len(node))
            if depth == len(path) - 1:
                node[segment] = value
                break
            child = node.get(segment)
            if not isinstance(child, dict):
                child = node[segment] = {}
            node = child
    return _listify(root)


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {key: _listify(value) for key, value in node.items()}
    if converted and all(key.isdigit() for key in converted):
        return [converted[key] for key in sorted(converted, key=int)]
    return converted


class Spec:
    """One parameter's type: `coerce` turns the decoded string form into the Python value."""

    def coerce(self, value: Any, name: str) -> Any:
        raise NotImplementedError


class Str(Spec):
    def coerce(self, value, name):
        if not isinstance(value, str):
            raise invalid(f"Invalid string: {_show(value)}", param=name)
        return value


class Int(Spec):
    def coerce(self, value, name):
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
            return int(value)
        raise invalid(f"Invalid integer: {_show(value)}", param=name)


class Bool(Spec):
    def coerce(self, value, name):
        if value in ("true", "false"):
            return value == "true"
        raise invalid(f"Invalid boolean: {_show(value)}", param=name)


class Enum(Spec):
    def __init__(self, *choices: str):
        self.choices = choices

    def coerce(self, value, name):
        if value in self.choices:
            return value
        listed = ", ".join(self.choices[:-1]) + f", or {self.choices[-1]}" if len(self.choices) > 1 else self.choices[0]
        raise invalid(f"Invalid {name}: must be one of {listed}", param=name)


class Metadata(Spec):
    """Stripe's metadata rules; `metadata=` (empty) means "clear all" and comes back as None."""

    def coerce(self, value, name):
        if value == "":
            return None
        if isinstance(value, list):  # keys that happen to be digits were read as a list
            value = {str(index): item for index, item in enumerate(value)}
        if not isinstance(value, dict):
            raise invalid("Invalid hash", param=name)
        if len(value) > 50:
            raise invalid("You can only specify up to 50 metadata keys.", param=name)
        for key, item in value.items():
            if not isinstance(item, str):
                raise invalid(f"Invalid string: {_show(item)}", param=f"{name}[{key}]")
            if len(key) > 40:
                raise invalid("Metadata keys can have at most 40 characters.", param=f"{name}[{key}]")
            if len(item) > 500:
                raise invalid("Metadata values can have at most 500 characters.", param=f"{name}[{key}]")
        return dict(value)


class ListOf(Spec):
    def __init__(self, item: Any):
        self.item = item

    def coerce(self, value, name):
        if value == "":
            return []
        if not isinstance(value, list):
            raise invalid("Invalid array", param=name)
        return [coerce(item, self.item, f"{name}[{index}]") for index, item in enumerate(value)]


class Range(Spec):
    """A timestamp filter: a plain integer, or any of gt/gte/lt/lte."""

    def coerce(self, value, name):
        if isinstance(value, dict):
            return coerce(value, {"gt": Int(), "gte": Int(), "lt": Int(), "lte": Int()}, name)
        return {"eq": Int().coerce(value, name)}


def coerce(value: Any, spec: Any, name: str = "") -> Any:
    """Check `value` against `spec` (a Spec, or a dict of field specs) and convert it."""
    if isinstance(spec, Spec):
        return spec.coerce(value, name)
    if not isinstance(value, dict):
        raise invalid("Invalid hash" if value != "" else f"Invalid {name or 'hash'}", param=name or None)
    result = {}
    for key, item in value.items():
        child = f"{name}[{key}]" if name else key
        if key not in spec:
            raise invalid(f"Received unknown parameter: {child}", param=child)
        result[key] = coerce(item, spec[key], child)
    return result


def parse(raw: dict, shape: dict, required: Iterable[str] = ()) -> dict:
    """Top-level entry: every endpoint also accepts `expand`; required fields are checked after."""
    params = coerce(raw, {**shape, "expand": ListOf(Str())})
    for path in required:
        node: Any = params
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node in (None, ""):
            raise missing_param(_bracketed(path))
    return params


def _bracketed(path: str) -> str:
    head, *rest = path.split(".")
    return head + "".join(f"[{part}]" for part in rest)


def _show(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)
