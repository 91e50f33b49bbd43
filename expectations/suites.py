"""Suites as code: one `SuiteSpec` per table of the pipeline.

Row-level rules (`Rule`) become GX expectations run on a sample; `unique`, `freshness`, volume,
emptiness and `sql_checks` are exact SQL over the whole table (see `expectations.sql_checks`).
A rule value written as "$name" is a run parameter (see `expectations.runner.run_parameters`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from expectations.results import ERROR, WARN
from ml.registry import STATUSES as MODEL_RUN_STATUSES
from ml.scoring import RFM_CELLS
from warehouse.audiences import KINDS as SEGMENT_KINDS
from warehouse.sources import CONSENT_PURPOSES as PURPOSES
from warehouse.sources import CONSENT_STATUSES, SUBJECT_TYPES, URBANICITY, WEB_EVENT_TYPES
from warehouse.sources import PRIVACY_REQUEST_TYPES as REQUEST_TYPES

# The contract's vocabularies are defined once, where ingest and the models use them.
DEVICE_TYPES = ("mobile", "desktop", "tablet", "app")
LEDGER_STATUSES = ("loaded", "rejected")

# Lowercase and trimmed, one @, a dotted domain: staging's normalize_email accepts exactly this.
EMAIL_REGEX = r"^[^@\sA-Z]+@[^@\sA-Z]+\.[^@\sA-Z]+$"
PHONE_E164_REGEX = r"^\+[1-9][0-9]{6,14}$"

NUMERIC_TYPES = frozenset(
    {
        "TINYINT",
        "SMALLINT",
        "INTEGER",
        "BIGINT",
        "HUGEINT",
        "UTINYINT",
        "USMALLINT",
        "UINTEGER",
        "UBIGINT",
        "UHUGEINT",
        "FLOAT",
        "REAL",
        "DOUBLE",
    }
)


def is_numeric_type(duckdb_type: str) -> bool:
    t = duckdb_type.upper()
    return t in NUMERIC_TYPES or t.startswith("DECIMAL")


@dataclass(frozen=True)
class Rule:
    """One row-level GX expectation: class name in `great_expectations.expectations`."""

    expectation: str
    column: str
    severity: str = ERROR
    kwargs: tuple[tuple[str, Any], ...] = ()
    where: tuple[str, str, Any] | None = None  # row condition (column, operator, value)

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column,) if self.where is None else (self.column, self.where[0])

    @property
    def parameters(self) -> tuple[str, ...]:
        return tuple(v[1:] for _, v in self.kwargs if isinstance(v, str) and v.startswith("$"))

    @property
    def name(self) -> str:
        return re.sub(r"(?<!^)(?=[A-Z])", "_", self.expectation).lower()


@dataclass(frozen=True)
class SuiteSpec:
    table: str
    required: tuple[str, ...]  # columns that must exist (missing: error)
    rules: tuple[Rule, ...] = ()
    unique: tuple[tuple[str, ...], ...] = ()  # exact key uniqueness in SQL
    id_columns: tuple[str, ...] = ()  # identify a failing row in the examples
    freshness: str | None = None  # newest value within freshness_days of run_date (warn)
    # between 1970-01-01 and the end of run_date + 1 day, as ingest quarantines otherwise;
    # exact SQL: cheap over all rows, and GX compares datetimes ~5x slower than numbers
    event_times: tuple[str, ...] = ()
    event_times_severity: str = ERROR
    # (column name -> DuckDB type, sample has rows) -> extra rules for columns known at run time
    dynamic: Callable[[Mapping[str, str], bool], list[Rule]] | None = None
    sql_checks: tuple[str, ...] = ()  # names in expectations.sql_checks.SQL_CHECKS


def not_null(column: str, severity: str = ERROR, where: tuple[str, str, Any] | None = None) -> Rule:
    return Rule("ExpectColumnValuesToNotBeNull", column, severity, where=where)


def in_set(column: str, values: tuple, severity: str = ERROR) -> Rule:
    return Rule("ExpectColumnValuesToBeInSet", column, severity, (("value_set", values),))


def not_in_set(column: str, values: tuple, severity: str = ERROR) -> Rule:
    return Rule("ExpectColumnValuesToNotBeInSet", column, severity, (("value_set", values),))


def between(column: str, lo: Any = None, hi: Any = None, severity: str = ERROR, **kw: Any) -> Rule:
    kwargs = tuple(
        (k, v) for k, v in (("min_value", lo), ("max_value", hi), *kw.items()) if v is not None
    )
    return Rule("ExpectColumnValuesToBeBetween", column, severity, kwargs)


def matches(column: str, regex: str, severity: str = ERROR) -> Rule:
    return Rule("ExpectColumnValuesToMatchRegex", column, severity, (("regex", regex),))


def _raw(
    table: str,
    required: tuple[str, ...],
    rules: tuple[Rule, ...],
    event_times: tuple[str, ...] = (),
    freshness: str | None = None,
) -> SuiteSpec:
    lineage = ("_file", "_row_number")
    return SuiteSpec(
        table=table,
        required=required + lineage,
        rules=tuple(not_null(c) for c in required + lineage) + rules,
        id_columns=lineage,
        freshness=freshness,
        event_times=event_times,
        # rows read = rows loaded + rows quarantined, per file of the ledger
        sql_checks=("rows_reconcile",),
    )


WINDOW_SUFFIX = re.compile(r"_(7|30|90|365)d$")
SHARE = re.compile(r"(^share_|_share_|_share$)")
NOT_A_COUNT = re.compile(r"share|rate|ratio|net")
INTEGER_TYPES = frozenset(t for t in NUMERIC_TYPES if "INT" in t)


# A feature that must have a value wherever its source has data for the person: a person with
# purchases has a recency and an order value, a visitor has a days-since-last-visit.
FEATURE_PRESENT_WHEN: dict[str, tuple[str, str, Any]] = {
    "recency_days": ("frequency_365d", ">", 0),
    "avg_order_value_365d": ("frequency_365d", ">", 0),
    "days_since_last_visit": ("web_events_90d", ">", 0),
}


def _feature_rules(columns: Mapping[str, str], has_rows: bool) -> list[Rule]:
    """Rules for every numeric feature column (ML uses all numeric columns but the keys).

    Counts are integer window columns: money over a window (net of returns) may be negative.
    Gates check quality, not presence: a feature null for every person (its source is absent or
    has no rows yet) warns; a feature null where its source has data for the person is an error.
    """
    rules: list[Rule] = []
    for name, dtype in columns.items():
        if name in ("person_id", "as_of") or not is_numeric_type(dtype):
            continue
        if SHARE.search(name):
            rules.append(between(name, 0, 1))
        elif (
            WINDOW_SUFFIX.search(name)
            and dtype.upper() in INTEGER_TYPES
            and not NOT_A_COUNT.search(name)
        ):
            rules.append(between(name, 0))
        condition = FEATURE_PRESENT_WHEN.get(name)
        if condition is not None and condition[0] in columns:
            rules.append(not_null(name, where=condition))
        if has_rows:
            rules.append(
                Rule(
                    "ExpectColumnProportionOfNonNullValuesToBeBetween",
                    name,
                    WARN,
                    (("min_value", 0), ("strict_min", True)),
                )
            )
            rules.append(
                Rule("ExpectColumnUniqueValueCountToBeBetween", name, WARN, (("min_value", 2),))
            )
    return rules


def _rfm_score_rules(columns: Mapping[str, str], has_rows: bool) -> list[Rule]:
    return [
        between(name, 1, 5)
        for name, dtype in columns.items()
        if name.startswith("rfm_") and is_numeric_type(dtype)
    ]


_SUITES: tuple[SuiteSpec, ...] = (
    # raw: what ingest loaded (quarantine already removed rows breaking these rules)
    _raw(
        "raw.crm",
        ("crm_customer_id", "source_system"),
        (),
        # out-of-range CRM times are nulled and flagged by ingest, so a surviving one is a bug
        event_times=("created_at", "updated_at"),
    ),
    _raw(
        "raw.pos",
        ("transaction_id", "transacted_at", "quantity", "unit_price"),
        (
            not_null("line_number"),
            between("unit_price", 0),
            not_in_set("quantity", (0,)),
        ),
        event_times=("transacted_at",),
        freshness="transacted_at",
    ),
    _raw(
        "raw.web",
        ("event_id", "event_at", "event_type", "anonymous_id"),
        (
            in_set("event_type", WEB_EVENT_TYPES),
            in_set("device_type", DEVICE_TYPES, WARN),  # raw is messy: staging normalises
        ),
        event_times=("event_at",),
        freshness="event_at",
    ),
    _raw(
        "raw.consent",
        ("consent_event_id", "subject_type", "subject_id", "purpose", "status", "event_at"),
        (
            in_set("subject_type", SUBJECT_TYPES),
            in_set("purpose", PURPOSES),
            in_set("status", CONSENT_STATUSES),
        ),
        event_times=("event_at",),
        freshness="event_at",
    ),
    _raw(
        "raw.privacy",
        ("request_id", "request_type", "subject_type", "subject_id", "requested_at"),
        (
            in_set("request_type", REQUEST_TYPES),
            in_set("subject_type", SUBJECT_TYPES),
        ),
        event_times=("requested_at",),
    ),
    _raw(
        "raw.campaigns",
        ("date", "platform", "campaign_id", "segment_id"),
        (
            between("impressions", 0),
            between("clicks", 0),
            between("spend", 0),
        ),
        event_times=("date",),
        freshness="date",
    ),
    _raw(
        "raw.enrichment",
        ("country", "postcode"),
        # urbanicity: ingest admits the set in any case (" Urban "); staging lower-cases and checks
        (
            between("median_household_income", 0),
            between("population_density", 0),
        ),
    ),
    SuiteSpec(
        table="raw.load_ledger",
        required=("source", "path", "status", "rows_loaded"),
        rules=(
            not_null("source"),
            not_null("path"),
            in_set("status", LEDGER_STATUSES),
            not_null("status"),
            between("rows_loaded", 0),
            between("rows_quarantined", 0),
        ),
        id_columns=("source", "path"),
    ),
    # staging views
    SuiteSpec(
        table="staging.stg_crm__customers",
        required=("source_system", "crm_customer_id"),
        rules=(
            not_null("source_system"),
            not_null("crm_customer_id"),
            matches("email", EMAIL_REGEX),
            matches("phone_e164", PHONE_E164_REGEX),
        ),
        unique=(("source_system", "crm_customer_id"),),
        id_columns=("source_system", "crm_customer_id"),
    ),
    SuiteSpec(
        table="staging.stg_pos__transaction_lines",
        required=("transaction_id", "line_number"),
        rules=(not_null("transaction_id"), not_null("line_number")),
        unique=(("transaction_id", "line_number"),),
        id_columns=("transaction_id", "line_number"),
    ),
    SuiteSpec(
        table="staging.stg_web__events",
        required=("event_id", "event_type", "anonymous_id"),
        rules=(
            not_null("event_id"),
            not_null("anonymous_id"),
            in_set("event_type", WEB_EVENT_TYPES),
            in_set("device_type", DEVICE_TYPES),  # normalised by staging
        ),
        unique=(("event_id",),),
        id_columns=("event_id",),
        event_times=("event_at",),
    ),
    SuiteSpec(
        table="staging.stg_consent__events",
        required=("consent_event_id", "subject_type", "purpose", "status", "event_at"),
        rules=(
            not_null("consent_event_id"),
            not_null("subject_node"),
            in_set("subject_type", SUBJECT_TYPES),
            in_set("purpose", PURPOSES),
            in_set("status", CONSENT_STATUSES),
        ),
        unique=(("consent_event_id",),),
        id_columns=("consent_event_id",),
        event_times=("event_at",),
    ),
    SuiteSpec(
        table="staging.stg_privacy__requests",
        required=("request_id", "request_type", "subject_type"),
        rules=(
            not_null("request_id"),
            in_set("request_type", REQUEST_TYPES),
            in_set("subject_type", SUBJECT_TYPES),
        ),
        unique=(("request_id",),),
        id_columns=("request_id",),
        event_times=("requested_at",),
    ),
    SuiteSpec(
        table="staging.stg_campaigns__results",
        required=("date", "campaign_id", "segment_id"),
        rules=(
            not_null("campaign_id"),
            not_null("segment_id"),
            between("impressions", 0),
            between("clicks", 0),
            between("spend", 0),
        ),
        id_columns=("campaign_id", "segment_id", "date"),
    ),
    SuiteSpec(
        table="staging.stg_enrichment__postcodes",
        required=("country", "postcode", "urbanicity"),
        rules=(
            not_null("country"),
            not_null("postcode"),
            in_set("urbanicity", URBANICITY),
            between("median_household_income", 0),
            between("population_density", 0),
        ),
        unique=(("country", "postcode"),),
        id_columns=("country", "postcode"),
    ),
    # marts
    SuiteSpec(
        table="marts.identity_map",
        required=("source_system", "source_key", "person_id"),
        rules=(
            not_null("source_system"),
            not_null("source_key"),
            # a cash sale carries no identifier; every CRM record and web device has a person
            not_null("person_id", where=("source_system", "!=", "pos")),
        ),
        unique=(("source_system", "source_key"),),
        id_columns=("source_system", "source_key"),
    ),
    SuiteSpec(
        table="marts.customer_profiles",
        required=("person_id", "is_known", *(f"consent_{p}" for p in PURPOSES)),
        rules=(
            not_null("person_id"),
            not_null("is_known"),
            *(not_null(f"consent_{p}") for p in PURPOSES),
            matches("email", EMAIL_REGEX),
            matches("phone", PHONE_E164_REGEX),
        ),
        unique=(("person_id",),),
        id_columns=("person_id",),
    ),
    SuiteSpec(
        table="marts.customer_features",
        required=("person_id",),
        rules=(not_null("person_id"),),
        unique=(("person_id",),),
        id_columns=("person_id",),
        dynamic=_feature_rules,
    ),
    SuiteSpec(
        table="marts.customer_scores",
        required=("person_id",),
        rules=(
            not_null("person_id"),
            between("propensity_30d", 0, 1),
            between("propensity_decile", 1, 10),
            between("probability_alive", 0, 1),
            between("expected_transactions_90d", 0),
            between("expected_transactions_365d", 0),
            between("expected_spend_365d", 0),
            # null for persons without analytics consent: they are never scored
            in_set("rfm_cell", RFM_CELLS),
        ),
        unique=(("person_id",),),
        id_columns=("person_id",),
        dynamic=_rfm_score_rules,
        sql_checks=("score_consent",),
    ),
    SuiteSpec(
        table="marts.segment_definitions",
        required=("segment_id", "kind", "purpose"),
        rules=(
            not_null("segment_id"),
            not_null("kind"),
            in_set("kind", SEGMENT_KINDS),
            not_null("purpose"),
            in_set("purpose", PURPOSES),
        ),
        unique=(("segment_id",),),
        id_columns=("segment_id",),
    ),
    SuiteSpec(
        table="marts.segment_members",
        required=("segment_id", "person_id", "rank", "is_holdout"),
        rules=(
            not_null("segment_id"),
            not_null("person_id"),
            between("rank", 1),
            not_null("is_holdout"),
        ),
        unique=(("segment_id", "person_id"),),
        id_columns=("segment_id", "person_id"),
        sql_checks=("segment_member_consent",),
    ),
    SuiteSpec(
        table="marts.segment_summary",
        required=("segment_id", "members"),
        rules=(
            not_null("segment_id"),
            between("members", 0),
            between("share_of_persons", 0, 1),
            between("members", "$min_segment_size", severity=WARN),
            between("share_of_persons", hi="$max_segment_share", severity=WARN),
        ),
        unique=(("segment_id",),),
        id_columns=("segment_id",),
        sql_checks=("segment_sizes_match_members",),
    ),
    SuiteSpec(
        table="marts.segment_membership_history",
        required=("segment_id", "person_id", "as_of"),
        rules=(not_null("segment_id"), not_null("person_id"), not_null("as_of")),
        unique=(("segment_id", "person_id", "as_of"),),
        id_columns=("segment_id", "person_id", "as_of"),
    ),
    SuiteSpec(
        table="ml.model_runs",
        required=("model_name", "metrics", "status"),
        rules=(
            not_null("model_name"),
            Rule("ExpectColumnValuesToBeJsonParseable", "metrics"),
            not_null("status"),
            in_set("status", MODEL_RUN_STATUSES),
            # a model that was not trained says why
            not_null("reason", where=("status", "!=", "trained")),
        ),
        id_columns=("model_name", "version"),
    ),
)

SUITES: dict[str, SuiteSpec] = {s.table: s for s in _SUITES}
