"""Usage against a plan's quota, as both billing and usage report it."""


def quota_figures(used_bytes, quota_bytes):
    """{used_bytes, quota_bytes, percent, over_quota}; percent needs both a measurement and a quota."""
    known = used_bytes is not None and quota_bytes is not None
    return {"used_bytes": used_bytes, "quota_bytes": quota_bytes,
            "percent": round(used_bytes * 100 / quota_bytes, 2) if known and quota_bytes else None,
            "over_quota": known and used_bytes > quota_bytes}
