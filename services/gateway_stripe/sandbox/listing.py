"""Stripe's list envelope, cursor pagination and `expand`, shared by every endpoint."""
from typing import List, Optional

from . import shapes
from .errors import invalid, no_such
from .store import Store


def paginate(store: Store, newest_first: List[dict], params: dict, url: str) -> dict:
    """Stripe's cursor pagination over a newest-first list."""
    limit = params.get("limit", 10)
    if not 1 <= limit <= 100:
        raise invalid("This value must be between 1 and 100 (it currently is %d)." % limit, param="limit")
    items = [obj for obj in newest_first if _in_range(obj["created"], params.get("created"))]
    ids = [obj["id"] for obj in items]
    if params.get("starting_after"):
        cursor = params["starting_after"]
        if cursor not in ids:
            raise no_such("object", cursor, param="starting_after")
        items = items[ids.index(cursor) + 1:]
    elif params.get("ending_before"):
        cursor = params["ending_before"]
        if cursor not in ids:
            raise no_such("object", cursor, param="ending_before")
        items = items[:ids.index(cursor)][-limit:]
        return shapes.list_object([store.render(obj) for obj in items], url, has_more=ids.index(cursor) > limit)
    page = items[:limit]
    return shapes.list_object([store.render(obj) for obj in page], url, has_more=len(items) > limit)


def _in_range(value: int, bounds: Optional[dict]) -> bool:
    if not bounds:
        return True
    checks = {"eq": value.__eq__, "gt": value.__gt__, "gte": value.__ge__, "lt": value.__lt__, "lte": value.__le__}
    return all(checks[op](limit) for op, limit in bounds.items())


def expand(store: Store, obj: dict, paths: List[str]) -> dict:
    """Replace id strings by the objects they name (`expand[]=latest_invoice`, `data.customer`)."""
    for path in paths:
        _expand(store, obj, path.split("."), path)
    return obj


def _expand(store: Store, node, parts: List[str], path: str) -> None:
    key, rest = parts[0], parts[1:]
    if not isinstance(node, dict) or key not in node:
        raise invalid(f"This property cannot be expanded ({path}).", param="expand")
    value = node[key]
    if key == "data" and isinstance(value, list) and rest:
        for element in value:
            _expand(store, element, rest, path)
        return
    if isinstance(value, str):
        found = store.lookup(value)
        if found is None:
            raise invalid(f"This property cannot be expanded ({path}).", param="expand")
        node[key] = value = found
    if rest and value is not None:
        _expand(store, value, rest, path)
