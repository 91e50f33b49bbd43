"""Result types returned by `expectations.validate`."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

ERROR = "error"
WARN = "warn"


@dataclass
class ExpectationResult:
    name: str
    column: str | None
    severity: str  # "error" or "warn"
    success: bool
    observed: Any = None
    failing_examples: list = field(default_factory=list)
    failing_count: int | None = None


@dataclass
class ValidationOutcome:
    table: str
    success: bool  # False iff an error-severity expectation failed
    rows_checked: int
    rows_total: int
    results: list[ExpectationResult] = field(default_factory=list)

    def failures(self, severity: str | None = None) -> list[ExpectationResult]:
        return [
            r
            for r in self.results
            if not r.success and (severity is None or r.severity == severity)
        ]

    def summary(self) -> str:
        failed = self.failures()
        if not failed:
            return (
                f"{self.table}: all {len(self.results)} expectations passed "
                f"({self.rows_checked} of {self.rows_total} rows checked)"
            )
        lines = []
        for r in failed:
            column = f" column={r.column}" if r.column else ""
            count = f": {r.failing_count} failing" if r.failing_count is not None else ":"
            observed = f" ({readable(r.observed)})" if r.observed not in (None, "", {}) else ""
            examples = (
                "; e.g. " + " | ".join(readable(e) for e in r.failing_examples[:5])
                if r.failing_examples
                else ""
            )
            lines.append(
                f"{self.table}: [{r.severity}] {r.name}{column}{count}{observed}{examples}"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-ready form (e.g. for Dagster check metadata)."""
        return to_jsonable(asdict(self))


def readable(value: Any) -> str:
    """A value as a person reads it: `key value, key value` for mappings, no braces or quotes."""
    value = to_jsonable(value)
    if isinstance(value, dict):
        return ", ".join(f"{k} {readable(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "[" + "; ".join(readable(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def to_jsonable(value: Any) -> Any:
    """Plain Python values for numpy scalars, timestamps, NaN and nested containers."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if hasattr(value, "isoformat"):  # pandas Timestamp
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalar
        try:
            return to_jsonable(value.item())
        except (ValueError, TypeError):
            pass
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)
