"""Landing-zone source specs: the typed columns and row rules of each `raw.<source>` table.

The column lists follow data-contracts.md section 2 and the raw types in docs/internals.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

RAW_TYPES = frozenset({"VARCHAR", "INTEGER", "BIGINT", "DOUBLE", "BOOLEAN", "DATE", "TIMESTAMP"})

# Landing gates (the checks on each `raw/<source>` asset, docs/internals.md "Quality").
GATE_POLICIES = ("error", "warn")
# A typed column whose non-empty values fail to cast at least this often was delivered retyped.
RETYPED_SHARE = 0.5
# Two column names this similar (difflib ratio of their letters and digits), or one holding the
# other, are a known column that went missing and an unknown one in its place: renamed?
RENAMED_SIMILARITY = 0.75


@dataclass(frozen=True)
class LandingGates:
    """How the landing gates of one source judge its files (settings, per source overridable).

    `rejected_file` / `schema_drift`: severity of a rejected file / of a renamed or retyped
    column ('error' blocks the run, 'warn' reports it once, in the run that loads the file).
    A file's quarantined share above `quarantine_warn_share` warns, above
    `quarantine_error_share` fails; the failure (and a retyped column's) needs at least `min_rows`
    rows (non-empty values), or all of them broken, else it warns: a 3-row test file with one bad
    row does not block a run, a wholly broken file does.
    """

    rejected_file: str = "error"
    schema_drift: str = "error"
    quarantine_warn_share: float = 0.05
    quarantine_error_share: float = 0.25
    min_rows: int = 20

    def __post_init__(self) -> None:
        for name in ("rejected_file", "schema_drift"):
            if getattr(self, name) not in GATE_POLICIES:
                raise ValueError(f"{name} must be one of {GATE_POLICIES}")
        if not 0 <= self.quarantine_warn_share <= self.quarantine_error_share <= 1:
            raise ValueError("need 0 <= quarantine_warn_share <= quarantine_error_share <= 1")
        if self.min_rows < 1:
            raise ValueError("min_rows must be at least 1")


@dataclass(frozen=True)
class Column:
    """One typed input column.

    `event_time`: out-of-range values quarantine the row; `soft_range`: invalid or out-of-range
    values become NULL and flag the row (`<name>_invalid`). `allowed` is the enumeration (matched
    case-insensitively after trim); `non_negative` quarantines negatives as `negative:<name>`.
    """

    name: str
    type: str = "VARCHAR"
    required: bool = False
    default: str | int | bool | None = None
    event_time: bool = False
    soft_range: tuple[str, str] | None = None  # (min date literal, max: 'run_date' or 'run_date+1')
    allowed: tuple[str, ...] | None = None
    non_negative: bool = False
    compact_date: bool = False  # also accept YYYYMMDD

    def __post_init__(self) -> None:
        if self.type not in RAW_TYPES:
            raise ValueError(f"column {self.name}: unknown type {self.type}")


@dataclass(frozen=True)
class SourceSpec:
    """A landing source: its folder/table name, columns and source-specific row rules.

    `rules` are (rule name, SQL condition over the typed column names) checked in order after the
    generic rules; the condition is code, never user input.
    """

    name: str
    columns: tuple[Column, ...]
    rules: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    @property
    def table(self) -> str:
        return f"raw.{self.name}"

    @property
    def quarantine_table(self) -> str:
        return f"raw.{self.name}_quarantine"


def _v(*names: str) -> tuple[Column, ...]:
    return tuple(Column(n) for n in names)


SUBJECT_TYPES = (
    "crm_customer_id",
    "email",
    "phone",
    "user_id",
    "anonymous_id",
    "loyalty_card_id",
)
WEB_EVENT_TYPES = (
    "page_view",
    "product_view",
    "search",
    "add_to_cart",
    "remove_from_cart",
    "checkout_start",
    "purchase",
    "signup",
    "login",
    "email_open",
    "email_click",
    "app_open",
)
CONSENT_PURPOSES = ("analytics", "personalization", "ad_targeting", "third_party_sharing")
CONSENT_STATUSES = ("granted", "denied", "revoked")
PRIVACY_REQUEST_TYPES = ("erasure", "access")
URBANICITY = ("urban", "suburban", "rural")

_CRM_CHANGE_RANGE = ("1970-01-01", "run_date+1")

SOURCES: dict[str, SourceSpec] = {
    "crm": SourceSpec(
        "crm",
        (
            Column("crm_customer_id", required=True),
            Column("source_system", default="crm"),
            *_v(
                "first_name",
                "last_name",
                "email",
                "phone",
                "street_address",
                "city",
                "postcode",
                "state",
                "country",
            ),
            Column(
                "date_of_birth",
                "DATE",
                soft_range=("1900-01-01", "run_date"),
                compact_date=True,
            ),
            *_v("gender", "occupation", "loyalty_card_id", "web_user_id"),
            Column("household_income", "DOUBLE"),
            Column("created_at", "TIMESTAMP", soft_range=_CRM_CHANGE_RANGE),
            Column("updated_at", "TIMESTAMP", soft_range=_CRM_CHANGE_RANGE),
        ),
    ),
    "pos": SourceSpec(
        "pos",
        (
            Column("transaction_id", required=True),
            Column("line_number", "INTEGER", default=1),
            Column("transacted_at", "TIMESTAMP", required=True, event_time=True),
            *_v(
                "store_id",
                "loyalty_card_id",
                "receipt_email",
                "payment_card_token",
                "sku",
                "product_category",
            ),
            Column("quantity", "DOUBLE", required=True),
            Column("unit_price", "DOUBLE", required=True),
            Column("is_return", "BOOLEAN", default=False),
        ),
        rules=(
            ("pos_quantity_zero", "quantity = 0"),
            ("pos_return_sign", "(quantity < 0) <> is_return"),
            ("pos_negative_price", "unit_price < 0"),
        ),
    ),
    "web": SourceSpec(
        "web",
        (
            Column("event_id", required=True),
            Column("event_type", required=True, allowed=WEB_EVENT_TYPES),
            Column("anonymous_id", required=True),
            Column("event_at", "TIMESTAMP", required=True, event_time=True),
            *_v(
                "user_id",
                "email",
                "session_id",
                "page_url",
                "sku",
                "product_category",
                "search_query",
                "order_id",
                "device_type",
                "geo_city",
                "geo_region",
                "geo_country",
                "geo_postcode",
                "utm_source",
                "utm_medium",
                "utm_campaign",
            ),
            Column("revenue", "DOUBLE"),
        ),
    ),
    "consent": SourceSpec(
        "consent",
        (
            Column("consent_event_id", required=True),
            Column("subject_type", required=True, allowed=SUBJECT_TYPES),
            Column("subject_id", required=True),
            Column("purpose", required=True, allowed=CONSENT_PURPOSES),
            Column("status", required=True, allowed=CONSENT_STATUSES),
            Column("source_system", default="crm"),
            Column("event_at", "TIMESTAMP", required=True, event_time=True),
            Column("source"),
        ),
    ),
    "privacy": SourceSpec(
        "privacy",
        (
            Column("request_id", required=True),
            Column("request_type", required=True, allowed=PRIVACY_REQUEST_TYPES),
            Column("subject_type", required=True, allowed=SUBJECT_TYPES),
            Column("subject_id", required=True),
            Column("source_system", default="crm"),
            Column("requested_at", "TIMESTAMP", required=True, event_time=True),
        ),
    ),
    "campaigns": SourceSpec(
        "campaigns",
        (
            Column("date", "DATE", required=True),
            Column("platform", required=True),
            Column("campaign_id", required=True),
            Column("segment_id", required=True),
            Column("launched_on", "DATE"),
            Column("impressions", "BIGINT", non_negative=True),
            Column("clicks", "BIGINT", non_negative=True),
            Column("conversions", "BIGINT"),
            Column("spend", "DOUBLE", non_negative=True),
            Column("conversion_value", "DOUBLE"),
        ),
    ),
    # optional third-party geo-demographics per postcode (docs/enrichment.md)
    "enrichment": SourceSpec(
        "enrichment",
        (
            Column("country", required=True),
            Column("postcode", required=True),
            Column("urbanicity", allowed=URBANICITY),
            Column("median_household_income", "DOUBLE", non_negative=True),
            Column("population_density", "DOUBLE", non_negative=True),
            Column("provider"),
        ),
    ),
}
