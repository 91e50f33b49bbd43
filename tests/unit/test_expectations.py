"""Suites and runner of `expectations`: good data passes, each kind of bad data fails right."""

from __future__ import annotations

import datetime as dt
import time

import duckdb
import pytest

import expectations as ex
from expectations.runner import sample_frame

RUN_DATE = dt.date(2026, 6, 30)
CONTEXT = {"run_date": RUN_DATE, "as_of": RUN_DATE, "min_segment_size": 2}

GOOD_TABLES = """
create schema raw; create schema staging; create schema marts; create schema ml;

create table raw.crm as
select 'c' || i as crm_customer_id, 'crm' as source_system, 'Ann' as first_name,
       ' Ann@X.com ' as email, '(555) 010-2233' as phone, date '1980-01-01' as date_of_birth,
       timestamp '2026-06-01' as updated_at,
       'crm/a.csv' as _file, i as _row_number, now()::timestamp as _loaded_at,
       null::varchar as _extra, null::varchar as _flags
from range(1, 21) t(i);

create table raw.pos as
select 'tx' || i as transaction_id, 1 as line_number,
       timestamp '2026-06-29 10:00:00' - to_hours(i) as transacted_at, 's1' as store_id,
       'card' || (i % 5) as loyalty_card_id,
       case when i % 4 = 0 then -1.0 else 2.0 end as quantity, 9.5 as unit_price,
       i % 4 = 0 as is_return, 'pos/a.csv' as _file, i as _row_number
from range(1, 21) t(i);

create table raw.web as
select 'e' || i as event_id, timestamp '2026-06-29 10:00:00' - to_hours(i) as event_at,
       ['page_view', 'purchase', 'search'][1 + i % 3] as event_type,
       'anon' || (i % 7) as anonymous_id,
       case when i % 2 = 0 then 'mobile' else null end as device_type, 10.0 as revenue,
       'web/a.jsonl' as _file, i as _row_number
from range(1, 21) t(i);

create table raw.consent as
select 'ce' || i as consent_event_id, 'email' as subject_type, 'a' || i || '@x.com' as subject_id,
       'crm' as source_system, ['analytics', 'ad_targeting'][1 + i % 2] as purpose,
       'granted' as status, timestamp '2026-06-28' as event_at, 'banner' as source,
       'consent/a.csv' as _file, i as _row_number
from range(1, 21) t(i);

create table raw.privacy as
select 'r' || i as request_id, 'erasure' as request_type, 'email' as subject_type,
       'a' || i || '@x.com' as subject_id, 'crm' as source_system,
       timestamp '2026-05-01' as requested_at, 'privacy/a.csv' as _file, i as _row_number
from range(1, 4) t(i);

create table raw.campaigns as
select date '2026-06-29' as date, 'meta' as platform, 'cmp1' as campaign_id, 'seg1' as segment_id,
       date '2026-06-01' as launched_on, 100::bigint as impressions, 5::bigint as clicks,
       1::bigint as conversions, 12.5 as spend, 30.0 as conversion_value,
       'campaigns/a.csv' as _file, i as _row_number
from range(1, 4) t(i);

create table raw.enrichment as
select ['US', 'GB'][1 + i % 2] as country, 'PC' || i as postcode,
       ['urban', 'Suburban ', 'rural'][1 + i % 3] as urbanicity,
       40000.0 + i as median_household_income, 100.0 * i as population_density,
       'geo' as provider, 'enrichment/a.csv' as _file, i as _row_number
from range(1, 4) t(i);

create table raw.crm_quarantine (_file varchar, _row_number bigint, rule varchar,
                                 record varchar, quarantined_at timestamp);
create table raw.pos_quarantine as select * from raw.crm_quarantine;
create table raw.web_quarantine as select * from raw.crm_quarantine;
create table raw.consent_quarantine as select * from raw.crm_quarantine;
create table raw.privacy_quarantine as select * from raw.crm_quarantine;
create table raw.campaigns_quarantine as select * from raw.crm_quarantine;
create table raw.enrichment_quarantine as select * from raw.crm_quarantine;
insert into raw.pos_quarantine values ('pos/a.csv', 21, 'pos_negative_price', '{}', now());

create table raw.load_ledger as
select source, source || '/a.' || ext as path, 'abc' as sha256, n::bigint as rows_loaded,
       q::bigint as rows_quarantined, 'loaded' as status, null::varchar as message,
       now()::timestamp as loaded_at, (n + q)::bigint as rows_read
from (values ('crm', 'csv', 20, 0), ('pos', 'csv', 20, 1), ('web', 'jsonl', 20, 0),
             ('consent', 'csv', 20, 0), ('privacy', 'csv', 3, 0), ('campaigns', 'csv', 3, 0),
             ('enrichment', 'csv', 3, 0))
     v(source, ext, n, q)
union all
-- an older version of pos/a.csv and a rejected newer one: neither is what raw holds
select 'pos', 'pos/a.csv', 'old', 5, 0, 'loaded', null, now()::timestamp - interval 1 day, 5
union all
select 'pos', 'pos/a.csv', 'new', 0, 0, 'rejected', 'pos/a.csv: missing required column(s) x',
       now()::timestamp + interval 1 day, null;

create view staging.stg_crm__customers as
select source_system, crm_customer_id, lower(trim(email)) as email,
       '+15550102233' as phone_e164
from raw.crm;
create view staging.stg_pos__transaction_lines as
select transaction_id, line_number, transacted_at from raw.pos;
create view staging.stg_web__events as
select event_id, event_at, event_type, anonymous_id, device_type from raw.web;
create view staging.stg_consent__events as
select consent_event_id, subject_type, 'email:' || subject_id as subject_node, purpose, status,
       event_at
from raw.consent;
create view staging.stg_privacy__requests as
select request_id, request_type, subject_type, requested_at from raw.privacy;
create view staging.stg_campaigns__results as
select date, platform, campaign_id, segment_id, impressions, clicks, spend from raw.campaigns;
create view staging.stg_enrichment__postcodes as
select country, postcode, lower(trim(urbanicity)) as urbanicity, median_household_income,
       population_density
from raw.enrichment;

create table marts.identity_map as
select 'crm' as source_system, 'c' || i as source_key, 'p' || i as person_id from range(1, 11) t(i)
union all select 'pos', 'tx1', null
union all select 'web', 'anon1', 'p1';

create table marts.customer_profiles as
select 'p' || i as person_id, 'p' || i || '@example.com' as email, '+15550102233' as phone,
       true as is_known, true as consent_analytics, i % 2 = 0 as consent_personalization,
       i <= 5 as consent_ad_targeting, false as consent_third_party_sharing
from range(1, 11) t(i);

create table marts.customer_features as
select 'p' || i as person_id, date '2026-06-30' as as_of, i as transactions_30d,
       i * 2 as transactions_365d, i * 10.5 as spend_90d, (i % 3) / 3.0 as share_online_30d,
       (i - 3) * 12.0 as pos_net_amount_365d, i / 20.0 as online_share_365d,
       i % 2 as return_rate_90d, 100 - i as days_since_last_purchase
from range(1, 11) t(i);

create table marts.customer_scores as
select 'p' || i as person_id, date '2026-06-30' as as_of, i / 10.0 as propensity_30d,
       11 - i as propensity_decile, 1 + i % 5 as rfm_recency, 1 + i % 5 as rfm_frequency,
       ['champions', 'lost', 'no_purchase'][1 + i % 3] as rfm_cell
from range(1, 11) t(i);

create table marts.segment_definitions as
select * from (values
    ('seg1', 'rule', 'analytics'), ('seg2', 'rfm', 'ad_targeting'),
    ('seg3', 'propensity', 'personalization')
) v(segment_id, kind, purpose);

create table marts.segment_members as
select 'seg1' as segment_id, 'p' || i as person_id, 1.0 as score, i as rank,
       i = 1 as is_holdout, date '2026-06-30' as as_of
from range(1, 11) t(i)
union all
select 'seg2', 'p' || i, 1.0, i, false, date '2026-06-30' from range(1, 6) t(i)
union all
select 'seg3', 'p' || i, 1.0, i / 2, false, date '2026-06-30' from range(2, 11, 2) t(i);

create table marts.segment_summary as
select segment_id, date '2026-06-30' as as_of, count(*) as members,
       count(*) / 20.0 as share_of_persons, 0 as excluded_no_consent, true as published
from marts.segment_members group by segment_id;

create table marts.segment_membership_history as
select segment_id, person_id, as_of, is_holdout from marts.segment_members
union all
select segment_id, person_id, date '2026-06-29', is_holdout from marts.segment_members;

create table ml.model_runs as
select 'propensity' as model_name, '1' as version, date '2026-06-30' as as_of,
       '{"auc": 0.71}' as metrics, '{}' as params, 'trained' as status,
       null::varchar as reason
union all
select 'clusters', '1', date '2026-06-30', '{}', '{}', 'skipped', 'only 4 persons';
"""


def good_warehouse() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(GOOD_TABLES)
    return con


@pytest.fixture()
def con() -> duckdb.DuckDBPyConnection:
    con = good_warehouse()
    yield con
    con.close()


def only_failure(outcome: ex.ValidationOutcome) -> ex.ExpectationResult:
    failures = outcome.failures()
    assert len(failures) == 1, outcome.summary()
    return failures[0]


@pytest.fixture(scope="module")
def good_outcomes() -> dict[str, ex.ValidationOutcome]:
    con = good_warehouse()
    outcomes = {table: ex.validate(con, table, context=CONTEXT) for table in ex.SUITES}
    con.close()
    return outcomes


@pytest.mark.parametrize("table", sorted(ex.SUITES))
def test_good_data_passes_every_suite(good_outcomes, table):
    outcome = good_outcomes[table]
    assert outcome.success, outcome.summary()
    assert outcome.failures() == [], outcome.summary()
    assert outcome.rows_total > 0
    assert outcome.rows_checked == outcome.rows_total
    ran = [r for r in outcome.results if not str(r.observed).startswith("skipped")]
    assert len(ran) >= 3


def test_unknown_table_raises_key_error(con):
    with pytest.raises(KeyError):
        ex.validate(con, "raw.nope")


def test_missing_table_fails_with_message():
    con = duckdb.connect()
    outcome = ex.validate(con, "marts.customer_profiles")
    assert not outcome.success
    assert (outcome.rows_checked, outcome.rows_total) == (0, 0)
    failure = only_failure(outcome)
    assert failure.name == "table_exists"
    assert "marts.customer_profiles does not exist" in outcome.summary()


def test_duplicate_key_is_counted_exactly(con):
    con.execute("insert into marts.identity_map values ('crm', 'c3', 'p3'), ('crm', 'c3', 'p9')")
    outcome = ex.validate(con, "marts.identity_map", context=CONTEXT)
    assert not outcome.success
    failure = only_failure(outcome)
    assert (failure.name, failure.severity) == ("key_unique", "error")
    assert failure.column == "source_system, source_key"
    assert failure.failing_count == 3
    assert failure.observed == {"duplicate_keys": 1, "duplicate_rows": 3}
    assert failure.failing_examples == [{"source_system": "crm", "source_key": "c3", "rows": 3}]


def test_person_required_except_for_cash_sales(con):
    con.execute("insert into marts.identity_map values ('web', 'anon9', null)")
    failure = only_failure(ex.validate(con, "marts.identity_map", context=CONTEXT))
    assert (failure.name, failure.column, failure.failing_count) == (
        "expect_column_values_to_not_be_null",
        "person_id",
        1,
    )
    assert failure.failing_examples[0]["source_key"] == "anon9"


def test_null_required_value_fails_with_row_lineage(con):
    con.execute("update raw.pos set transaction_id = null where _row_number = 7")
    outcome = ex.validate(con, "raw.pos", context=CONTEXT)
    assert not outcome.success
    failure = only_failure(outcome)
    assert failure.name == "expect_column_values_to_not_be_null"
    assert (failure.column, failure.severity, failure.failing_count) == (
        "transaction_id",
        "error",
        1,
    )
    assert failure.failing_examples[0]["_file"] == "pos/a.csv"
    assert failure.failing_examples[0]["_row_number"] == 7


def test_negative_price_fails(con):
    con.execute("update raw.pos set unit_price = -3.0 where _row_number in (2, 5)")
    failure = only_failure(ex.validate(con, "raw.pos", context=CONTEXT))
    assert (failure.name, failure.column, failure.severity) == (
        "expect_column_values_to_be_between",
        "unit_price",
        "error",
    )
    assert failure.failing_count == 2
    assert sorted(e["_row_number"] for e in failure.failing_examples) == [2, 5]
    assert all(e["unit_price"] == -3.0 for e in failure.failing_examples)


def test_bad_event_type_fails_and_messy_device_type_only_warns(con):
    con.execute("update raw.web set event_type = 'teleport' where _row_number = 3")
    con.execute("update raw.web set device_type = 'Mobile ' where _row_number = 4")
    outcome = ex.validate(con, "raw.web", context=CONTEXT)
    assert not outcome.success
    error = only_failure(ex.ValidationOutcome("raw.web", False, 0, 0, outcome.failures("error")))
    assert (error.name, error.column) == ("expect_column_values_to_be_in_set", "event_type")
    assert error.failing_examples == [
        {"event_type": "teleport", "_file": "web/a.jsonl", "_row_number": 3}
    ]
    [warn] = outcome.failures("warn")
    assert (warn.column, warn.failing_count) == ("device_type", 1)


def test_event_time_in_future_fails_over_all_rows(con):
    con.execute("update raw.consent set event_at = timestamp '2031-01-01' where _row_number = 9")
    outcome = ex.validate(con, "raw.consent", sample_rows=5, context=CONTEXT)
    assert outcome.rows_checked == 5
    failure = only_failure(outcome)
    assert (failure.name, failure.column, failure.severity) == (
        "values_in_range",
        "event_at",
        "error",
    )
    assert failure.failing_count == 1
    assert failure.failing_examples == [
        {"_file": "consent/a.csv", "_row_number": 9, "event_at": "2031-01-01T00:00:00"}
    ]


def test_event_time_before_1970_fails(con):
    con.execute("update raw.pos set transacted_at = timestamp '1969-12-31' where _row_number = 4")
    failure = only_failure(ex.validate(con, "raw.pos", context=CONTEXT))
    assert (failure.name, failure.column, failure.failing_count) == (
        "values_in_range",
        "transacted_at",
        1,
    )


def test_event_time_on_day_after_run_date_is_accepted(con):
    con.execute(
        "update raw.pos set transacted_at = timestamp '2026-07-01 23:59:00' where _row_number = 1"
    )
    assert ex.validate(con, "raw.pos", context=CONTEXT).failures() == []


def test_stale_data_warns_only(con):
    outcome = ex.validate(con, "raw.web", context={"run_date": dt.date(2026, 7, 20)})
    assert outcome.success
    failure = only_failure(outcome)
    assert (failure.name, failure.severity, failure.column) == ("freshness", "warn", "event_at")
    assert failure.observed["age_days"] == 21


def test_member_without_consent_is_a_privacy_error(con):
    # p7 has no ad_targeting consent (only p1..p5 have it)
    con.execute(
        "insert into marts.segment_members values ('seg2', 'p7', 1.0, 6, false, '2026-06-30')"
    )
    # a member of a segment with no definition cannot prove consent either
    con.execute(
        "insert into marts.segment_members values ('ghost', 'p1', 1.0, 1, false, '2026-06-30')"
    )
    outcome = ex.validate(con, "marts.segment_members", context=CONTEXT)
    assert not outcome.success
    failure = only_failure(outcome)
    assert (failure.name, failure.severity) == ("segment_member_consent", "error")
    assert failure.failing_count == 2
    assert {"segment_id": "seg2", "person_id": "p7", "purpose": "ad_targeting"} in (
        failure.failing_examples
    )
    assert {"segment_id": "ghost", "person_id": "p1", "purpose": None} in (failure.failing_examples)
    assert "p7" in outcome.summary()


def test_member_consent_gate_fails_closed_without_profiles(con):
    con.execute("drop table marts.customer_profiles")
    failure = only_failure(ex.validate(con, "marts.segment_members", context=CONTEXT))
    assert failure.name == "segment_member_consent"
    assert "customer_profiles does not exist" in failure.observed


def test_constant_feature_only_warns(con):
    con.execute("update marts.customer_features set spend_90d = 7.0")
    outcome = ex.validate(con, "marts.customer_features", context=CONTEXT)
    assert outcome.success
    failure = only_failure(outcome)
    assert (failure.name, failure.column, failure.severity) == (
        "expect_column_unique_value_count_to_be_between",
        "spend_90d",
        "warn",
    )
    assert failure.observed == 1


def test_all_null_feature_warns_as_a_missing_source(con):
    # no web data landed: a visit feature is null for everyone, which is not bad data
    con.execute("alter table marts.customer_features add column visits_7d double")
    outcome = ex.validate(con, "marts.customer_features", context=CONTEXT)
    assert outcome.success
    assert outcome.failures("error") == []
    warned = {(w.name, w.column, w.observed) for w in outcome.failures("warn")}
    assert ("expect_column_proportion_of_non_null_values_to_be_between", "visits_7d", 0) in warned


def test_feature_null_where_its_source_has_data_is_an_error(con):
    # a purchaser without a recency is a broken feature model, whatever else is absent
    con.execute("alter table marts.customer_features add column recency_days bigint")
    con.execute("alter table marts.customer_features add column frequency_365d bigint")
    con.execute("update marts.customer_features set frequency_365d = 0, recency_days = null")
    assert ex.validate(con, "marts.customer_features", context=CONTEXT).failures("error") == []
    con.execute(
        "update marts.customer_features set frequency_365d = 2, recency_days = 3 "
        "where person_id in ('p1', 'p2')"
    )
    con.execute("update marts.customer_features set frequency_365d = 1 where person_id = 'p3'")
    outcome = ex.validate(con, "marts.customer_features", context=CONTEXT)
    [error] = outcome.failures("error")
    assert (error.name, error.column) == ("expect_column_values_to_not_be_null", "recency_days")
    assert [e["person_id"] for e in error.failing_examples] == ["p3"]


def test_negative_count_and_share_out_of_range_fail(con):
    con.execute("update marts.customer_features set transactions_30d = -1 where person_id = 'p2'")
    con.execute("update marts.customer_features set share_online_30d = 1.5 where person_id = 'p3'")
    con.execute(
        "update marts.customer_features set online_share_365d = -0.1 where person_id = 'p4'"
    )
    outcome = ex.validate(con, "marts.customer_features", context=CONTEXT)
    failing = {(r.column, r.failing_examples[0]["person_id"]) for r in outcome.failures("error")}
    assert failing == {
        ("transactions_30d", "p2"),
        ("share_online_30d", "p3"),
        ("online_share_365d", "p4"),
    }


def test_negative_money_over_a_window_is_allowed(con):
    # net of returns: p1 and p2 have negative pos_net_amount_365d in the good data
    negative = con.execute(
        "select count(*) from marts.customer_features where pos_net_amount_365d < 0"
    ).fetchone()[0]
    assert negative == 2
    assert ex.validate(con, "marts.customer_features", context=CONTEXT).failures() == []


def test_volume_drop_beyond_tolerance_warns(con):
    context = {**CONTEXT, "previous_row_count": 100, "volume_tolerance": 0.5}
    outcome = ex.validate(con, "raw.pos", context=context)
    assert outcome.success
    failure = only_failure(outcome)
    assert (failure.name, failure.severity) == ("table_row_count_volume", "warn")
    assert failure.observed["rows"] == 20
    within = ex.validate(con, "raw.pos", context={**context, "previous_row_count": 30})
    assert within.failures() == []


def test_empty_table_passes_with_emptiness_warning(con):
    con.execute("delete from marts.customer_features")
    outcome = ex.validate(con, "marts.customer_features", context=CONTEXT)
    assert outcome.success
    assert (outcome.rows_checked, outcome.rows_total) == (0, 0)
    assert [(r.name, r.severity) for r in outcome.failures()] == [("table_not_empty", "warn")]


def test_small_segment_warns_only_when_min_size_given(con):
    context = {**CONTEXT, "min_segment_size": 6}
    outcome = ex.validate(con, "marts.segment_summary", context=context)
    assert outcome.success
    failure = only_failure(outcome)
    assert (failure.column, failure.severity, failure.failing_count) == ("members", "warn", 2)
    unset = ex.validate(con, "marts.segment_summary", context={"run_date": RUN_DATE})
    assert unset.failures() == []


def test_invalid_values_in_marts_fail(con):
    con.execute(
        "update marts.customer_profiles set email = 'Bad@Example.com' where person_id = 'p4'"
    )
    con.execute("update marts.customer_profiles set phone = '5550102233' where person_id = 'p5'")
    con.execute("update marts.customer_scores set rfm_cell = 'whales' where person_id = 'p1'")
    con.execute("update marts.customer_scores set propensity_30d = 1.2 where person_id = 'p2'")
    con.execute("update ml.model_runs set metrics = '{auc: 0.7'")
    profiles = ex.validate(con, "marts.customer_profiles", context=CONTEXT)
    assert {r.column for r in profiles.failures("error")} == {"email", "phone"}
    scores = ex.validate(con, "marts.customer_scores", context=CONTEXT)
    assert {r.column for r in scores.failures("error")} == {"rfm_cell", "propensity_30d"}
    runs = ex.validate(con, "ml.model_runs", context=CONTEXT)
    assert only_failure(runs).name == "expect_column_values_to_be_json_parseable"


def test_a_model_run_not_trained_without_a_reason_fails(con):
    con.execute("update ml.model_runs set reason = null")
    failure = only_failure(ex.validate(con, "ml.model_runs", context=CONTEXT))
    assert (failure.name, failure.column) == ("expect_column_values_to_not_be_null", "reason")
    con.execute("update ml.model_runs set reason = 'x', status = 'untrainable'")
    failure = only_failure(ex.validate(con, "ml.model_runs", context=CONTEXT))
    assert (failure.name, failure.column) == ("expect_column_values_to_be_in_set", "status")


def test_missing_required_column_is_an_error(con):
    con.execute("alter table marts.segment_members drop column is_holdout")
    outcome = ex.validate(con, "marts.segment_members", context=CONTEXT)
    assert not outcome.success
    failure = only_failure(outcome)
    assert (failure.name, failure.column) == ("expect_column_to_exist", "is_holdout")


def test_outcome_summary_and_dict_are_readable(con):
    con.execute("update raw.pos set unit_price = -1 where _row_number = 2")
    outcome = ex.validate(con, "raw.pos", context=CONTEXT)
    line = outcome.summary()
    assert line.startswith("raw.pos: [error] expect_column_values_to_be_between column=unit_price")
    assert "_row_number 2" in line and "{" not in line  # no Python dict in what people read
    as_dict = outcome.to_dict()
    assert as_dict["success"] is False and as_dict["rows_total"] == 20


def test_large_table_is_sampled_but_uniqueness_is_exact():
    con = duckdb.connect()
    con.execute("create schema staging")
    con.execute(
        "create table staging.stg_web__events as "
        "select 'e' || i as event_id, timestamp '2026-06-01' + to_seconds(i) as event_at, "
        "'page_view' as event_type, 'a' || i % 1000 as anonymous_id, 'app' as device_type "
        "from range(1000000) t(i)"
    )
    sample_rows = 50_000
    # the same seeded reservoir the runner reads, to pick a key outside it
    sample = sample_frame(con, "staging.stg_web__events", ["event_id"], sample_rows)
    sampled = set(sample["event_id"])
    planted = next(f"e{i}" for i in range(500_000, 1_000_000) if f"e{i}" not in sampled)
    con.execute(
        "update staging.stg_web__events set event_id = ? where event_id = 'e999999'", [planted]
    )
    start = time.perf_counter()
    outcome = ex.validate(con, "staging.stg_web__events", sample_rows=sample_rows, context=CONTEXT)
    elapsed = time.perf_counter() - start
    print(f"\nvalidate 1M-row table, {sample_rows} sampled: {elapsed:.2f}s")
    assert (outcome.rows_checked, outcome.rows_total) == (sample_rows, 1_000_000)
    assert not outcome.success
    failure = only_failure(outcome)
    assert failure.name == "key_unique"
    assert failure.failing_count == 2
    assert failure.failing_examples == [{"event_id": planted, "rows": 2}]
    assert elapsed < 10


def test_validation_of_a_50k_sample_is_fast():
    con = duckdb.connect()
    con.execute(GOOD_TABLES)
    con.execute(
        "insert into raw.web select 'x' || i, timestamp '2026-06-29' - to_seconds(i), "
        "'page_view', 'a' || i % 1000, 'desktop', null, 'web/b.jsonl', i "
        "from range(100000) t(i)"
    )
    con.execute(
        "insert into raw.load_ledger values ('web', 'web/b.jsonl', 'x', 100000, 0, 'loaded', "
        "null, now(), 100000)"
    )
    ex.validate(con, "raw.web", sample_rows=50_000, context=CONTEXT)  # warm the suite cache
    start = time.perf_counter()
    outcome = ex.validate(con, "raw.web", sample_rows=50_000, context=CONTEXT)
    elapsed = time.perf_counter() - start
    print(f"\nvalidate raw.web, 50k sampled of {outcome.rows_total}: {elapsed:.2f}s")
    assert outcome.success, outcome.summary()
    assert outcome.rows_checked == 50_000
    assert elapsed < 3


def test_rows_read_reconcile_with_loaded_plus_quarantined(con):
    outcome = ex.validate(con, "raw.pos", context=CONTEXT)
    [check] = [r for r in outcome.results if r.name == "rows_reconcile"]
    # the newest loaded version counts (21 rows read: 20 loaded + 1 quarantined)
    assert check.success
    assert check.observed == {
        "files": 1,
        "rows_read": 21,
        "rows_loaded_plus_quarantined": 21,
        "rows_suppressed_or_erased": 0,
        "mismatched_files": 0,
    }


def test_a_row_lost_after_ingest_fails_the_reconcile_gate(con):
    con.execute("delete from raw.pos_quarantine")
    con.execute("delete from raw.pos where _row_number = 3")
    failure = only_failure(ex.validate(con, "raw.pos", context=CONTEXT))
    assert (failure.name, failure.severity, failure.failing_count) == ("rows_reconcile", "error", 1)
    assert failure.failing_examples == [
        {
            "file": "pos/a.csv",
            "in_ledger": True,
            "rows_read": 21,
            "rows_loaded": 19,
            "rows_quarantined": 0,
            "rows_suppressed_or_erased": 0,
        }
    ]


def test_raw_rows_of_a_file_without_ledger_row_fail_the_reconcile_gate(con):
    con.execute("update raw.crm set _file = 'crm/ghost.csv' where _row_number > 15")
    failure = only_failure(ex.validate(con, "raw.crm", context=CONTEXT))
    assert failure.name == "rows_reconcile"
    assert failure.observed["mismatched_files"] == 2
    files = {e["file"]: (e["in_ledger"], e["rows_loaded"]) for e in failure.failing_examples}
    assert files == {"crm/a.csv": (True, 15), "crm/ghost.csv": (False, 5)}


def test_segment_holding_nearly_everyone_warns(con):
    con.execute(
        "update marts.segment_summary set share_of_persons = 0.99 where segment_id = 'seg1'"
    )
    outcome = ex.validate(con, "marts.segment_summary", context=CONTEXT)
    assert outcome.success
    failure = only_failure(outcome)
    assert (failure.column, failure.severity) == ("share_of_persons", "warn")


def test_summary_sizes_must_match_member_rows(con):
    con.execute("update marts.segment_summary set members = 7 where segment_id = 'seg2'")
    failure = only_failure(ex.validate(con, "marts.segment_summary", context=CONTEXT))
    assert (failure.name, failure.severity) == ("segment_sizes_match_members", "error")
    assert failure.failing_examples == [{"segment_id": "seg2", "members": 7, "member_rows": 5}]


def test_membership_history_key_is_unique(con):
    con.execute(
        "insert into marts.segment_membership_history values "
        "('seg1', 'p1', date '2026-06-30', false)"
    )
    failure = only_failure(ex.validate(con, "marts.segment_membership_history", context=CONTEXT))
    assert (failure.name, failure.failing_count) == ("key_unique", 2)


def test_scores_outside_zero_one_fail(con):
    con.execute("alter table marts.customer_scores add column probability_alive double")
    con.execute("update marts.customer_scores set probability_alive = 1.5 where person_id = 'p3'")
    failure = only_failure(ex.validate(con, "marts.customer_scores", context=CONTEXT))
    assert (failure.column, failure.failing_examples[0]["person_id"]) == ("probability_alive", "p3")


def test_rows_erased_or_suppressed_reconcile_exactly_per_file(con):
    path = con.execute("select _file from raw.pos where _row_number = 3").fetchone()[0]
    con.execute("delete from raw.pos where _row_number in (3, 4)")
    assert only_failure(ex.validate(con, "raw.pos", context=CONTEXT)).name == "rows_reconcile"
    con.execute("create schema privacy")
    con.execute(
        "create table privacy.erased_rows (source varchar, path varchar, rows bigint, "
        "erased_at timestamp)"
    )
    # an erasure logged before the file's current version was loaded explains nothing
    con.execute(
        "insert into privacy.erased_rows values ('pos', ?, 2, timestamp '2000-01-01')", [path]
    )
    assert only_failure(ex.validate(con, "raw.pos", context=CONTEXT)).name == "rows_reconcile"
    # one row erased cannot explain two missing rows
    con.execute(
        "insert into privacy.erased_rows values ('pos', ?, 1, now() + interval 1 hour)", [path]
    )
    assert only_failure(ex.validate(con, "raw.pos", context=CONTEXT)).name == "rows_reconcile"
    # rows the suppression list dropped at load complete the account
    con.execute("alter table raw.load_ledger add column if not exists rows_suppressed bigint")
    con.execute("update raw.load_ledger set rows_suppressed = 1 where path = ?", [path])
    outcome = ex.validate(con, "raw.pos", context=CONTEXT)
    [check] = [r for r in outcome.results if r.name == "rows_reconcile"]
    assert check.success and check.observed["rows_suppressed_or_erased"] == 2
    # neither explains rows of a file the ledger does not know
    con.execute("update raw.pos set _file = 'pos/ghost.csv' where _row_number = 5")
    assert not ex.validate(con, "raw.pos", context=CONTEXT).success


def test_a_scored_person_without_analytics_consent_fails_the_gate(con):
    assert ex.validate(con, "marts.customer_scores", context=CONTEXT).success
    person = con.execute(
        "select person_id from marts.customer_scores where propensity_30d is not null limit 1"
    ).fetchone()[0]
    con.execute(
        "update marts.customer_profiles set consent_analytics = false where person_id = ?",
        [person],
    )
    failure = only_failure(ex.validate(con, "marts.customer_scores", context=CONTEXT))
    assert (failure.name, failure.severity) == ("score_consent", "error")
    assert failure.failing_examples == [{"person_id": person}]
