"""The great-expectations side: one ephemeral context per process, suites built once and cached."""

from __future__ import annotations

import operator
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from expectations.results import ERROR, WARN, ExpectationResult, to_jsonable
from expectations.suites import Rule

# Closed network: GX must not phone home (set here too in case this module is imported alone).
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

EXAMPLES = 5
_OPERATORS = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_GX_SEVERITY = {ERROR: "critical", WARN: "warning"}
_lock = threading.Lock()
_state: dict[str, Any] = {}
_suites: dict[tuple, Any] = {}


def _batch_definition() -> Any:
    """The process-wide ephemeral context's whole-DataFrame batch definition (GX setup is slow)."""
    if "batch_definition" not in _state:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        asset = context.data_sources.add_pandas("microseg").add_dataframe_asset("frame")
        _state["context"] = context
        _state["batch_definition"] = asset.add_batch_definition_whole_dataframe("whole")
    return _state["batch_definition"]


def _gx_value(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("$"):
        return {"$PARAMETER": value[1:]}
    if isinstance(value, tuple):
        return list(value)
    return value


def _row_condition(rule: Rule) -> dict[str, Any]:
    if rule.where is None:
        return {}
    from great_expectations.expectations.row_conditions import Column

    column, op, value = rule.where
    return {"row_condition": _OPERATORS[op](Column(column), value)}


def _suite(table: str, rules: tuple[Rule, ...]) -> Any:
    key = (table, rules)
    if key not in _suites:
        import great_expectations as gx
        import great_expectations.expectations as gxe

        expectations = [
            getattr(gxe, rule.expectation)(
                column=rule.column,
                severity=_GX_SEVERITY[rule.severity],
                meta={"rule": i},
                **_row_condition(rule),
                **{k: _gx_value(v) for k, v in rule.kwargs},
            )
            for i, rule in enumerate(rules)
        ]
        name = f"{table}#{len(_suites)}"
        _suites[key] = _state["context"].suites.add(
            gx.ExpectationSuite(name=name, expectations=expectations)
        )
    return _suites[key]


def _exception_message(info: Any) -> str | None:
    if not info:
        return None
    if "raised_exception" in info:
        return info.get("exception_message") if info.get("raised_exception") else None
    for nested in info.values():  # keyed by metric when a metric failed
        if isinstance(nested, Mapping):
            message = _exception_message(nested)
            if message:
                return message
    return None


def run_rules(
    table: str,
    rules: Sequence[Rule],
    frame: Any,
    parameters: Mapping[str, Any],
    id_columns: Sequence[str] = (),
) -> list[ExpectationResult]:
    """Validate a pandas DataFrame against `rules`; one result per rule, in rule order."""
    if not rules:
        return []
    rules = tuple(rules)
    result_format: dict[str, Any] = {
        "result_format": "SUMMARY",
        "partial_unexpected_count": EXAMPLES,
    }
    if id_columns:
        result_format["unexpected_index_column_names"] = list(id_columns)
    with _lock:
        batch_definition = _batch_definition()
        suite = _suite(table, rules)
        batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
        validation = batch.validate(
            suite, expectation_parameters=dict(parameters), result_format=result_format
        )
    by_rule: dict[int, ExpectationResult] = {}
    for r in validation.results:
        rule_index = int(r.expectation_config.meta["rule"])
        rule = rules[rule_index]
        by_rule[rule_index] = _to_result(rule, r.success, r.result or {}, r.exception_info)
    return [by_rule[i] for i in sorted(by_rule)]


def _to_result(
    rule: Rule, success: bool, result: Mapping, exception_info: Any
) -> ExpectationResult:
    message = _exception_message(exception_info)
    if message:
        return ExpectationResult(
            rule.name, rule.column, rule.severity, False, f"error: {message}", [], None
        )
    if "unexpected_count" in result:
        examples = result.get("partial_unexpected_index_list") or result.get(
            "partial_unexpected_list", []
        )
        observed = {
            "unexpected_count": result.get("unexpected_count"),
            "element_count": result.get("element_count"),
            "unexpected_percent": result.get("unexpected_percent"),
        }
        return ExpectationResult(
            rule.name,
            rule.column,
            rule.severity,
            bool(success),
            to_jsonable(observed),
            to_jsonable(list(examples)[:EXAMPLES]) if not success else [],
            int(result["unexpected_count"]),
        )
    return ExpectationResult(
        rule.name,
        rule.column,
        rule.severity,
        bool(success),
        to_jsonable(result.get("observed_value")),
        [],
        None,
    )
