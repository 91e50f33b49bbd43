"""Segments declared as code, and the engine that materialises them set-based in DuckDB.

A definition is a SQL boolean expression over `marts.customer_profiles p`, `marts.customer_features
f` and `marts.customer_scores s` (joined by person_id); `score` ranks members (higher = better).
Both are code reviewed with this file, never user input.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import date

import duckdb
import pyarrow as pa

from ml._db import table_columns
from warehouse.sources import CONSENT_PURPOSES as PURPOSES

KINDS = ("rule", "rfm", "cluster", "propensity", "clv", "lookalike")
_SEGMENT_ID = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
HOLDOUT_BUCKETS = 10_000
PROFILE_FEATURES = ("recency_days", "frequency_365d", "monetary_365d", "web_events_30d")


@dataclass(frozen=True)
class SegmentDefinition:
    segment_id: str
    name: str
    kind: str
    description: str
    definition: str
    score: str
    purpose: str
    version: str = "1"

    def __post_init__(self) -> None:
        if not _SEGMENT_ID.match(self.segment_id):
            raise ValueError(f"segment_id must match {_SEGMENT_ID.pattern}: {self.segment_id!r}")
        if self.kind not in KINDS:
            raise ValueError(f"{self.segment_id}: kind {self.kind!r} not in {KINDS}")
        if self.purpose not in PURPOSES:
            raise ValueError(f"{self.segment_id}: purpose {self.purpose!r} not in {PURPOSES}")
        if ";" in self.definition or ";" in self.score:
            raise ValueError(f"{self.segment_id}: definition and score are single expressions")


SEGMENTS: list[SegmentDefinition] = [
    SegmentDefinition(
        "rfm_champions",
        "RFM champions",
        "rfm",
        "Bought recently and often (R 5, F 4-5): reward and retain.",
        "s.rfm_cell = 'champions'",
        "coalesce(f.monetary_365d, 0)",
        "personalization",
    ),
    SegmentDefinition(
        "rfm_at_risk",
        "RFM at risk",
        "rfm",
        "Used to buy often (F 3-4) but not recently (R 1-2): win back before they lapse.",
        "s.rfm_cell = 'at_risk'",
        "coalesce(f.monetary_365d, 0)",
        "personalization",
    ),
    SegmentDefinition(
        "rfm_hibernating",
        "RFM hibernating",
        "rfm",
        "Low recency and low frequency (R 1-2, F 1-2, not lost): low-cost reactivation.",
        "s.rfm_cell = 'hibernating'",
        "coalesce(s.propensity_30d, 0)",
        "analytics",
    ),
    SegmentDefinition(
        "propensity_top_decile",
        "Top decile purchase propensity",
        "propensity",
        "The 10% most likely to buy in the next 30 days (propensity_decile = 1).",
        "s.propensity_decile = 1",
        "s.propensity_30d",
        "ad_targeting",
    ),
    SegmentDefinition(
        "cart_abandoners_30d",
        "Cart abandoners (30 days)",
        "rule",
        "Added to cart without buying in the last 30 days.",
        "f.cart_adds_without_purchase_30d > 0",
        "f.cart_adds_without_purchase_30d + coalesce(s.propensity_30d, 0)",
        "personalization",
    ),
    SegmentDefinition(
        "lapsed_high_value",
        "Lapsed high value",
        "rule",
        "Spend in the top 20% of purchasers over 365 days, but no purchase for 91-365 days.",
        "f.recency_days between 91 and 365 and f.monetary_365d >= ("
        "select quantile_cont(x.monetary_365d, 0.8) from marts.customer_features x "
        "where x.monetary_365d > 0)",
        "f.monetary_365d",
        "ad_targeting",
    ),
    SegmentDefinition(
        "mobile_first_browsers",
        "Mobile-first browsers",
        "rule",
        "At least 60% of web activity on mobile or app, and 2+ sessions in 30 days.",
        "coalesce(f.share_mobile, 0) + coalesce(f.share_app, 0) >= 0.6 and f.sessions_30d >= 2",
        "coalesce(f.web_events_30d, 0)",
        "personalization",
    ),
    SegmentDefinition(
        "new_customers_90d",
        "New customers (90 days)",
        "rule",
        "Known for at most 90 days and already purchased.",
        "f.tenure_days <= 90 and f.recency_days is not null",
        "coalesce(f.monetary_365d, 0)",
        "personalization",
    ),
    SegmentDefinition(
        "high_intent_browsers",
        "High-intent browsers",
        "rule",
        "Viewed 3+ products without buying in 30 days and no purchase in the last 30 days.",
        "f.product_views_without_purchase_30d >= 3 "
        "and (f.recency_days is null or f.recency_days > 30)",
        "f.product_views_without_purchase_30d + coalesce(s.propensity_30d, 0)",
        "ad_targeting",
    ),
    SegmentDefinition(
        "email_engaged",
        "Email engaged",
        "rule",
        "Clicked at least one email in the last 30 days.",
        "f.email_clicks_30d > 0",
        "f.email_clicks_30d + 0.1 * coalesce(f.email_opens_30d, 0)",
        "personalization",
    ),
]


def cluster_segments(cluster_ids: list[int]) -> list[SegmentDefinition]:
    """One analytics segment per behavioural cluster found by the latest scoring run."""
    return [
        SegmentDefinition(
            f"cluster_{int(c)}",
            f"Behavioural cluster {int(c)}",
            "cluster",
            f"Persons in K-Means cluster {int(c)} (0 = largest); centroid profile in "
            "ml.model_runs (behavioural_clusters).",
            f"s.cluster_id = {int(c)}",
            "coalesce(s.propensity_30d, 0)",
            "analytics",
        )
        for c in sorted({int(c) for c in cluster_ids})
    ]


_BASE = (
    "from marts.customer_profiles p "
    "left join marts.customer_features f on f.person_id = p.person_id "
    "left join marts.customer_scores s on s.person_id = p.person_id"
)


def _segment_sql(seg: SegmentDefinition, i: int) -> str:
    return (
        f"select $seg_{i} as segment_id, p.person_id, cast(({seg.score}) as double) as score, "
        f'coalesce(p."consent_{seg.purpose}", false) as consented '
        f"{_BASE} where coalesce(({seg.definition}), false)"
    )


def _bindable(con: duckdb.DuckDBPyConnection, seg: SegmentDefinition) -> str | None:
    """None when the definition binds against the current tables, else the error text."""
    try:
        con.execute(f"select * from ({_segment_sql(seg, 0)}) limit 0", {"seg_0": seg.segment_id})
        con.fetchall()
    except duckdb.Error as exc:
        return str(exc).splitlines()[0]
    return None


def _in_transaction(con: duckdb.DuckDBPyConnection, statements: list[tuple[str, dict]]) -> None:
    con.execute("begin transaction")
    try:
        for sql, params in statements:
            con.execute(sql, params)
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise


def build_segments(
    con: duckdb.DuckDBPyConnection,
    as_of: date,
    holdout_share: float = 0.1,
    min_segment_size: int = 50,
) -> dict:
    """Materialise SEGMENTS plus one segment per cluster: definitions, consented members with
    rank and a stable holdout, history for as_of, and a summary. Returns sizes and warnings."""
    if not 0.0 <= holdout_share <= 1.0:
        raise ValueError(f"holdout_share must be in [0, 1], got {holdout_share}")
    if min_segment_size < 0:
        raise ValueError(f"min_segment_size must be >= 0, got {min_segment_size}")
    for table in ("customer_profiles", "customer_features", "customer_scores"):
        if not table_columns(con, "marts", table):
            raise ValueError(f"marts.{table} is missing: build it before segments")
    profile_cols = table_columns(con, "marts", "customer_profiles")
    missing_consent = [p for p in PURPOSES if f"consent_{p}" not in profile_cols]
    if missing_consent:
        raise ValueError(f"marts.customer_profiles lacks consent columns for {missing_consent}")

    warnings: list[str] = []
    cluster_ids = [
        r[0]
        for r in con.execute(
            "select distinct cluster_id from marts.customer_scores where cluster_id is not null"
        ).fetchall()
    ]
    declared = SEGMENTS + cluster_segments(cluster_ids)
    segments, skipped = [], []
    for seg in declared:
        error = _bindable(con, seg)
        if error is None:
            segments.append(seg)
        else:
            skipped.append(seg.segment_id)
            warnings.append(f"segment {seg.segment_id} skipped: definition does not bind: {error}")

    defs = pa.table(
        {
            k: pa.array([asdict(s)[k] for s in segments], type=pa.string())
            for k in (
                "segment_id",
                "name",
                "kind",
                "description",
                "definition",
                "purpose",
                "version",
                "score",
            )
        }
    )
    con.register("_ml_segment_definitions", defs)
    try:
        _in_transaction(
            con,
            [
                (
                    "create or replace table marts.segment_definitions as "
                    "select * from _ml_segment_definitions order by segment_id",
                    {},
                )
            ],
        )
    finally:
        con.unregister("_ml_segment_definitions")

    params = {f"seg_{i}": s.segment_id for i, s in enumerate(segments)}
    union = " union all ".join(_segment_sql(s, i) for i, s in enumerate(segments))
    if not union:
        union = (
            "select null::varchar as segment_id, null::varchar as person_id, "
            "null::double as score, null::boolean as consented where false"
        )
    con.execute(f"create or replace temp table _ml_segment_matches as {union}", params)

    threshold = int(round(holdout_share * HOLDOUT_BUCKETS))
    # md5 (not hash) so holdouts stay put across processes and DuckDB versions.
    members_sql = """
        create or replace table marts.segment_members as
        select
            segment_id,
            person_id,
            score,
            cast(row_number() over (
                partition by segment_id order by score desc nulls last, person_id
            ) as integer) as rank,
            md5_number_lower(segment_id || ':' || person_id) % $buckets < $threshold
                as is_holdout,
            cast($as_of as date) as as_of
        from _ml_segment_matches
        where consented
        order by segment_id, rank
    """
    _in_transaction(
        con,
        [
            (
                members_sql,
                {"buckets": HOLDOUT_BUCKETS, "threshold": threshold, "as_of": as_of},
            )
        ],
    )

    con.execute(
        "create table if not exists marts.segment_membership_history ("
        "segment_id varchar, person_id varchar, as_of date, is_holdout boolean)"
    )
    _in_transaction(
        con,
        [
            ("delete from marts.segment_membership_history where as_of = $as_of", {"as_of": as_of}),
            (
                "insert into marts.segment_membership_history "
                "select segment_id, person_id, as_of, is_holdout from marts.segment_members",
                {},
            ),
        ],
    )

    feature_cols = table_columns(con, "marts", "customer_features")
    score_cols = table_columns(con, "marts", "customer_scores")
    means = [
        # rounded: a parallel average of doubles differs in its last bits from run to run
        f"round(avg(f.{c}), 6) as mean_{c}"
        if c in feature_cols
        else f"cast(null as double) as mean_{c}"
        for c in PROFILE_FEATURES
    ]
    means.append(
        "round(avg(s.propensity_30d), 6) as mean_propensity_30d"
        if "propensity_30d" in score_cols
        else "cast(null as double) as mean_propensity_30d"
    )
    mean_names = [f"mean_{c}" for c in (*PROFILE_FEATURES, "propensity_30d")]
    summary_sql = f"""
        create or replace table marts.segment_summary as
        with persons as (
            select count(*) as n from marts.customer_profiles
        ),
        excluded as (
            select segment_id, count(*) as excluded_no_consent
            from _ml_segment_matches
            where not consented
            group by segment_id
        ),
        member_stats as (
            select
                m.segment_id,
                count(*) as members,
                count(*) filter (where m.is_holdout) as holdout_members,
                {", ".join(means)}
            from marts.segment_members m
            left join marts.customer_features f on f.person_id = m.person_id
            left join marts.customer_scores s on s.person_id = m.person_id
            group by m.segment_id
        )
        select
            d.segment_id,
            d.name,
            d.kind,
            d.purpose,
            cast($as_of as date) as as_of,
            coalesce(ms.members, 0) as members,
            coalesce(ms.holdout_members, 0) as holdout_members,
            coalesce(ms.members, 0) / nullif(persons.n, 0) as share_of_persons,
            coalesce(e.excluded_no_consent, 0) as excluded_no_consent,
            coalesce(ms.members, 0) < $min_size as below_min_size,
            {", ".join(f"ms.{c}" for c in mean_names)}
        from marts.segment_definitions d
        cross join persons
        left join member_stats ms on ms.segment_id = d.segment_id
        left join excluded e on e.segment_id = d.segment_id
        order by d.segment_id
    """
    _in_transaction(con, [(summary_sql, {"as_of": as_of, "min_size": min_segment_size})])
    con.execute("drop table if exists _ml_segment_matches")

    rows = con.execute(
        "select segment_id, members, holdout_members, excluded_no_consent, below_min_size "
        "from marts.segment_summary order by segment_id"
    ).fetchall()
    sizes, empty, small = {}, [], []
    for seg_id, members, holdout, excluded, below in rows:
        sizes[seg_id] = {
            "members": int(members),
            "holdout_members": int(holdout),
            "excluded_no_consent": int(excluded),
        }
        if members == 0:
            empty.append(seg_id)
            warnings.append(f"segment {seg_id} is empty")
        elif below:
            small.append(seg_id)
            warnings.append(
                f"segment {seg_id} has {members} members, below the minimum {min_segment_size}"
            )
    persons = con.execute("select count(*) from marts.customer_profiles").fetchall()[0][0]
    return {
        "as_of": as_of.isoformat(),
        "persons": int(persons),
        "segments": sizes,
        "empty": empty,
        "below_min_size": small,
        "skipped": skipped,
        "warnings": warnings,
    }
