"""What the model runs say after scoring: the purchase propensity's back-test ROC-AUC against the
floor (MICROSEG_PROPENSITY_MIN_AUC) and against the previous trained version."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date

import dagster as dg
import duckdb

from ml._db import table_exists
from ml.stats import auc_standard_error
from orchestration.defs.ml.assets import SCORES_KEY
from orchestration.defs.resources import WarehouseResource

PROPENSITY_MODEL = "purchase_propensity"
# A back-test AUC this far below the previous trained version's warns.
MAX_AUC_DROP = 0.05
# Fewer positives or negatives than this in the back-test slice make its AUC too noisy to block.
MIN_CLASS_ROWS = 20
# A back-test whose models saw less history than the 90-day feature windows judges a short
# history, not the model: it warns.
MIN_BACKTEST_HISTORY_DAYS = 90
CUTOFF_SPACING_DAYS = 30


@dataclass
class Finding:
    passed: bool
    blocking: bool  # an ERROR-severity failure, which stops the run before publishing
    description: str
    metadata: dict = field(default_factory=dict)

    @property
    def severity(self) -> dg.AssetCheckSeverity:
        return dg.AssetCheckSeverity.ERROR if self.blocking else dg.AssetCheckSeverity.WARN


def _warn(description: str, **metadata) -> Finding:
    return Finding(False, False, description, metadata)


def _backtest_history_days(con: duckdb.DuckDBPyConnection, metrics: dict) -> int | None:
    """Days of event data before the latest cutoff the back-test's models trained on (the
    cutoff before the measured one; the measured one itself when there was only one)."""
    cutoff = metrics.get("validation_cutoff")
    if not cutoff or not table_exists(con, "intermediate", "int_customer_days_aggregated"):
        return None
    first = con.execute(
        "select min(activity_date) from intermediate.int_customer_days_aggregated"
    ).fetchall()[0][0]
    if first is None:
        return None
    spacing = CUTOFF_SPACING_DAYS if (metrics.get("n_cutoffs") or 1) > 1 else 0
    return (date.fromisoformat(str(cutoff)) - first).days - spacing


def propensity_auc_finding(
    con: duckdb.DuckDBPyConnection, min_auc: float, max_drop: float = MAX_AUC_DROP
) -> Finding:
    """Judge the latest purchase_propensity run in ml.model_runs (see propensity_backtest_auc)."""
    if not table_exists(con, "ml", "model_runs"):
        return _warn("ml.model_runs is missing: no propensity run to judge")
    latest = con.execute(
        "select version, status, reason, metrics, trained_at from ml.model_runs "
        "where model_name = ? order by trained_at desc, version desc limit 1",
        [PROPENSITY_MODEL],
    ).fetchall()
    if not latest:
        return _warn(f"no {PROPENSITY_MODEL} run recorded")
    version, status, reason, metrics_json, trained_at = latest[0]
    if status != "trained":
        # missing data is not bad data: a model that could not train is said, not failed
        return _warn(
            f"{PROPENSITY_MODEL} {version} not trained ({status}): {reason}", version=version
        )
    metrics = json.loads(metrics_json or "{}")
    auc = metrics.get("roc_auc")
    meta = {"version": version, "min_auc": min_auc}
    if auc is None:
        return _warn(
            f"{PROPENSITY_MODEL} {version}: no back-test ROC-AUC (the back-test slices held a "
            "single class or no data)",
            **meta,
        )
    auc = float(auc)
    meta["backtest_roc_auc"] = auc
    backtest = metrics.get("backtest") or {}
    slice_words = (metrics.get("slices") or {}).get("backtest_test", "the back-test slice")
    test_rows, positives = backtest.get("test_rows"), backtest.get("test_positives")
    previous = con.execute(
        "select version, json_extract(metrics, '$.roc_auc')::double from ml.model_runs "
        "where model_name = ? and status = 'trained' and version <> ? and trained_at <= ? "
        "and json_extract(metrics, '$.roc_auc') is not null "
        "order by trained_at desc, version desc limit 1",
        [PROPENSITY_MODEL, version, trained_at],
    ).fetchall()
    if previous:
        meta.update({"previous_version": previous[0][0], "previous_roc_auc": previous[0][1]})
    if auc < min_auc:
        text = (
            f"{PROPENSITY_MODEL} {version}: back-test ROC-AUC {auc:.3f} is below "
            f"MICROSEG_PROPENSITY_MIN_AUC {min_auc:.3f} (measured on {slice_words})"
        )
        if (
            test_rows is not None
            and positives is not None
            and min(positives, test_rows - positives) < MIN_CLASS_ROWS
        ):
            return _warn(
                f"{text}; only {positives} of {test_rows} rows bought, too few to block on", **meta
            )
        history = _backtest_history_days(con, metrics)
        if history is not None and history < MIN_BACKTEST_HISTORY_DAYS:
            meta["backtest_history_days"] = history
            return _warn(
                f"{text}; its models saw {history} days of history, less than the "
                f"{MIN_BACKTEST_HISTORY_DAYS}-day feature windows: a short history, not judged",
                **meta,
            )
        if test_rows is not None and positives is not None:
            # a small back-test measures the AUC loosely: block only when even its upper 95%
            # bound (Hanley & McNeil) is below the floor
            upper = auc + 1.96 * auc_standard_error(auc, positives, test_rows - positives)
            meta["backtest_roc_auc_upper_95"] = round(upper, 4)
            if upper >= min_auc:
                return _warn(
                    f"{text}, but within its measurement error (upper 95% bound {upper:.3f} on "
                    f"{test_rows} rows)",
                    **meta,
                )
        return Finding(False, True, text, meta)
    if previous and auc < previous[0][1] - max_drop:
        return _warn(
            f"{PROPENSITY_MODEL} {version}: back-test ROC-AUC {auc:.3f} is more than "
            f"{max_drop:.2f} below the previous version {previous[0][0]} ({previous[0][1]:.3f})",
            **meta,
        )
    return Finding(
        True,
        False,
        f"{PROPENSITY_MODEL} {version}: back-test ROC-AUC {auc:.3f} (floor {min_auc:.3f}"
        + (f", previous {previous[0][1]:.3f}" if previous else "")
        + f"; measured on {slice_words})",
        meta,
    )


def lifetime_value_finding(con: duckdb.DuckDBPyConnection) -> Finding:
    """Values no BG/NBD or Gamma-Gamma fit can give (negative expectations, a probability
    outside 0-1, more purchases in 90 days than in 365) block; a model that was not trained
    warns with its reason."""
    if not table_exists(con, "marts", "customer_scores"):
        return _warn("marts.customer_scores is missing")
    bad, filled, consented = con.execute(
        """
        select
            count(*) filter (
                where expected_transactions_90d < 0
                    or expected_spend_365d < 0
                    or probability_alive not between 0 and 1
                    or expected_transactions_90d > expected_transactions_365d + 1e-9
            ),
            count(expected_transactions_90d),
            count(*) filter (where rfm_cell is not null)
        from marts.customer_scores
        """
    ).fetchall()[0]
    meta = {"persons_with_value": int(filled), "impossible_values": int(bad)}
    if bad:
        return Finding(False, True, f"{bad} persons with impossible lifetime values", meta)
    latest = (
        con.execute(
            "select version, status, reason from ml.model_runs "
            "where model_name = 'customer_lifetime_value' "
            "order by trained_at desc, version desc limit 1"
        ).fetchall()
        if table_exists(con, "ml", "model_runs")
        else []
    )
    if latest and latest[0][1] != "trained":
        return _warn(
            f"customer_lifetime_value {latest[0][0]} not trained ({latest[0][1]}): {latest[0][2]}",
            **meta,
        )
    if consented and not filled:
        return _warn("no scored person has a lifetime value", **meta)
    return Finding(True, False, f"{filled} persons with a lifetime value", meta)


PROPENSITY_CHECK = dg.AssetCheckSpec(
    "propensity_backtest_auc",
    asset=SCORES_KEY,
    blocking=True,
    description=(
        "Stops the run before publishing when the purchase propensity's back-test ROC-AUC (on a "
        "cutoff neither its base models nor its calibrator saw; ml.model_runs metrics) is below "
        "MICROSEG_PROPENSITY_MIN_AUC (default 0.6): its scores would rank buyers little better "
        "than chance (a small back-test blocks only when even the upper 95% bound of its AUC "
        "is below the floor). Warns when the AUC fell more than 0.05 below the previous trained "
        "version's, when the back-test slice has too few buyers to judge, and when the model "
        "was not trained (too little data: propensity_30d is NULL, with the reason)."
    ),
)
LIFETIME_VALUE_CHECK = dg.AssetCheckSpec(
    "lifetime_value_plausible",
    asset=SCORES_KEY,
    blocking=True,
    description=(
        "Stops the run when a lifetime value is impossible (negative expected purchases or "
        "spend, a probability alive outside 0 to 1, more purchases expected in 90 days than in "
        "365): such values would rank a value segment wrongly. Warns when the model was not "
        "trained (with the reason) or left every consented person without a value."
    ),
)


def _result(spec: dg.AssetCheckSpec, finding: Finding) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=spec.asset_key,
        check_name=spec.name,
        passed=finding.passed,
        severity=finding.severity,
        description=finding.description[:2000],
        metadata=finding.metadata,
    )


# One op for the scores' model checks: each blocking check on an asset is an input of what runs
# after it, and one op keeps that order the same in every process (the job's snapshot with it).
@dg.multi_asset_check(specs=[PROPENSITY_CHECK, LIFETIME_VALUE_CHECK])
def score_model_checks(warehouse: WarehouseResource):
    with warehouse.connect() as con:
        propensity = propensity_auc_finding(con, warehouse.propensity_min_auc)
        lifetime_value = lifetime_value_finding(con)
    yield _result(PROPENSITY_CHECK, propensity)
    yield _result(LIFETIME_VALUE_CHECK, lifetime_value)


model_checks = [score_model_checks]
