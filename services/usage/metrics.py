"""The metric registry: what each metric is, and how its reports fold into an aggregate row.

A new metric is one line in METRICS (with an existing kind) or a small Metric subclass; nothing
else in the service names metrics, except QUOTA_METRIC (what plans' data quota is measured on).

Each kind folds twice, the same way: in Python, to combine the reports of one batch that land on
the same aggregate row (PostgreSQL refuses to touch one row twice in a single INSERT ... ON
CONFLICT), and in SQL, to combine that with the row already stored (atomic, so concurrent batches
cannot lose an update).
"""
from sqlalchemy import case, func
from sqlalchemy.dialects.postgresql import insert

BIGINT_MAX = 2 ** 63 - 1


class Metric:
    kind = None
    carries_over = False  # True: a period with no report yet starts from the last known value

    def __init__(self, name):
        self.name = name

    def fold(self, current, value, at):
        """(value, at) after adding one report to `current` ((value, at) or None)."""
        raise NotImplementedError

    def conflict_update(self, table, excluded):
        """(set_, where) for ON CONFLICT DO UPDATE of an aggregate row."""
        raise NotImplementedError

    def upsert(self, model, key_columns):
        """INSERT ... ON CONFLICT (key) DO UPDATE as this metric folds; executed with a list of rows
        (executemany), so the statement is compiled once and cached, whatever the batch."""
        stmt = insert(model)
        set_, where = self.conflict_update(model.__table__.c, stmt.excluded)
        return stmt.on_conflict_do_update(index_elements=key_columns, set_=set_, where=where)


class Gauge(Metric):
    """A level (storage in use): the report with the latest timestamp wins, whatever order they come
    in; a late, older report never overwrites a newer one (equal timestamps: the first one stays)."""

    kind = "gauge"
    carries_over = True

    def fold(self, current, value, at):
        if current is None or at > current[1]:
            return value, at
        return current

    def conflict_update(self, table, excluded):
        return ({"value": excluded.value, "value_at": excluded.value_at},
                table.value_at < excluded.value_at)


class Counter(Metric):
    """An amount used (bytes transferred): reports add up; saturates at BIGINT_MAX rather than fail."""

    kind = "counter"

    def fold(self, current, value, at):
        if current is None:
            return value, at
        return min(current[0] + value, BIGINT_MAX), max(current[1], at)

    def conflict_update(self, table, excluded):
        total = case((table.value > BIGINT_MAX - excluded.value, BIGINT_MAX),
                     else_=table.value + excluded.value)
        return {"value": total, "value_at": func.greatest(table.value_at, excluded.value_at)}, None


METRICS = {metric.name: metric for metric in (
    Gauge("storage_bytes"),
    Counter("transfer_bytes"),
)}

# Plans' data quota is measured on this metric (thresholds, percent, over_quota).
QUOTA_METRIC = "storage_bytes"
