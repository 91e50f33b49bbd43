"""The Splink model: comparisons and their levels (starting m/u, term frequencies), the settings
dict and its hash (what makes a stored model reusable), prediction blocking candidates and their
choice per run, the EM sessions' and the prior's rules, and the Splink linker."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import duckdb

from ml.matching import em_floor
from ml.matching.inputs import (
    NICKNAMES,
    NORMALISATION_VERSION,
    STREET_ABBREVIATIONS,
    _check_identifier,
)

COMPARISON_COLUMNS = (
    "first_name",
    "last_name",
    "date_of_birth",
    "street_address",
    "locality",
    "email",
    "phone",
)


# Pairs scored by the model: any one rule admits a pair. A rule is a list of (left column, right
# column) pairs of match_input that must be equal. Candidates run from the most selective (two or
# three keys) to single keys; `choose_blocking_rules` takes them in this order while the
# comparisons they generate, counted on the data at hand, fit the comparison budget. A duplicate
# with typos in several fields shares no two-key combination with its original, only a single
# key: on a small or mid-sized base the single keys cost little and are taken, on a large one the
# broad ones (a common surname, a city) are left out and the selective ones carry recall.
BlockingKeys = tuple[tuple[str, str], ...]


def _same(*columns: str) -> BlockingKeys:
    return tuple((c, c) for c in columns)


PREDICTION_BLOCKING_CANDIDATES: tuple[BlockingKeys, ...] = (
    _same("postcode", "dob"),
    _same("postcode", "last_name", "first_key"),
    # first names too far apart for one key (a typo, a short form of another name)
    _same("postcode", "last_name", "first_initial"),
    _same("postcode", "street_address"),
    _same("dob", "last_name"),
    _same("dob", "first_key"),
    _same("dob", "city"),
    _same("dob", "street_address"),
    _same("first_key", "last_name"),
    (("first_name", "last_name"), ("last_name", "first_name")),  # names swapped
    _same("street_address", "city"),
    _same("last_name", "street_address"),
    _same("first_key", "street_address"),
    _same("email"),
    _same("phone"),
    _same("dob"),
    _same("street_address"),
    _same("postcode"),
    _same("city"),
    _same("last_name"),
    _same("first_key"),
)
# Comparisons all chosen rules together may generate: this many per record, and never fewer than
# the minimum (a small base can afford every candidate). A cost limit, not an accuracy setting.
COMPARISONS_PER_RECORD = 30
MIN_COMPARISONS = 1_000_000


def blocking_rule_sql(keys: BlockingKeys) -> str:
    return " and ".join(f"l.{left} = r.{right}" for left, right in keys)


PREDICTION_BLOCKING_RULES = tuple(blocking_rule_sql(k) for k in PREDICTION_BLOCKING_CANDIDATES)


def rule_comparisons(con: duckdb.DuckDBPyConnection, table: str, keys: BlockingKeys) -> int:
    """Record pairs a blocking rule generates on `table`, counted from the sizes of its key groups
    without forming a pair (exact for keys on the same column; for swapped columns, ordered pairs
    halved)."""
    _check_identifier(table)
    columns = {c for pair in keys for c in pair}
    for column in columns:
        if not column.isidentifier():
            raise ValueError(f"not a column name: {column!r}")
    left = ", ".join(f"{a} as k{i}" for i, (a, _) in enumerate(keys))
    right = ", ".join(f"{b} as k{i}" for i, (_, b) in enumerate(keys))
    lnull = " and ".join(f"{a} is not null" for a, _ in keys)
    rnull = " and ".join(f"{b} is not null" for _, b in keys)
    on = ", ".join(f"k{i}" for i in range(len(keys)))
    if all(a == b for a, b in keys):
        row = con.execute(
            f"select coalesce(sum(n * (n - 1)), 0) from (select count(*) as n from {table} "
            f"where {lnull} group by {', '.join(a for a, _ in keys)})"
        ).fetchall()
        return int(row[0][0]) // 2
    row = con.execute(
        f"""
        with
        l as (select {left}, count(*) as n from {table} where {lnull} group by all),
        r as (select {right}, count(*) as n from {table} where {rnull} group by all)
        select coalesce(sum(l.n * r.n), 0) from l inner join r using ({on})
        """
    ).fetchall()
    return int(row[0][0]) // 2


def choose_blocking_rules(
    con: duckdb.DuckDBPyConnection, table: str, records: int
) -> tuple[list[str], list[dict[str, Any]]]:
    """The prediction blocking rules for this data: candidates in order while their counted
    comparisons fit the budget. Returns (rule SQL, one report row per candidate)."""
    budget = max(MIN_COMPARISONS, COMPARISONS_PER_RECORD * records)
    chosen: list[str] = []
    report: list[dict[str, Any]] = []
    spent = 0
    for keys in PREDICTION_BLOCKING_CANDIDATES:
        sql = blocking_rule_sql(keys)
        cost = rule_comparisons(con, table, keys)
        taken = spent + cost <= budget
        if taken:
            chosen.append(sql)
            spent += cost
        report.append({"rule": sql, "comparisons": cost, "chosen": taken})
    return chosen, report


# EM sessions: each leaves the comparisons it blocks on untrained; together they cover all. None
# admits household members (they differ in first name and birth date), whose shared address and
# contact data would otherwise teach EM that a differing first name is no evidence.
# Splink leaves out a comparison that reads a blocking column, by name: the first-name comparison
# reads last_name (its swapped level), so both sessions on last_name leave it out, and blocking on
# first_key (derived from first_name) admits only pairs at its exact or nickname level. Only the
# session on birth date and postcode sees every first-name level (swapped, one edit, fuzzy, else);
# without it they keep their starting m. (Its estimates agree with the truth on FEBRL and the
# generator's data within a few per cent.)
TRAINING_BLOCKING_KEYS: tuple[BlockingKeys, ...] = (
    _same("postcode", "first_key", "last_name"),
    _same("dob", "last_name"),
    _same("dob", "first_key"),
    _same("dob", "postcode"),
)
TRAINING_BLOCKING_RULES = tuple(blocking_rule_sql(k) for k in TRAINING_BLOCKING_KEYS)


# Rules that find certain matches, for the prior (probability two random records match).
PRIOR_RULES = (
    "l.first_key = r.first_key and l.last_name = r.last_name and l.dob = r.dob "
    "and l.postcode = r.postcode",
)
PRIOR_RULES_RECALL = 0.6


def _level(sql: str, label: str, m: float, u: float, **extra: Any) -> dict[str, Any]:
    return {"sql_condition": sql, "label_for_charts": label, "m_probability": m,
            "u_probability": u, **extra}  # fmt: skip


def _null(sql: str) -> dict[str, Any]:
    return {"sql_condition": sql, "label_for_charts": "null", "is_null_level": True}


def _else(m: float, u: float) -> dict[str, Any]:
    return _level("ELSE", "else", m, u)


# Term-frequency adjustments on exact-match levels: agreeing on a rare value (Nguyen-Whitaker) is
# more evidence than agreeing on a common one (Smith). Splink scores such a level with the value's
# frequency in match_input instead of the level's average u (u_exact), adding
# log2(u_exact / max(frequency, minimum)) bits. The minimum caps the bonus of a rare value: for
# names at one record in 10,000 (about +5 bits over an average name), since relatives share a rare
# surname and an address, and a rare spelling may be a one-off; postcodes are many, so theirs is
# lower. Columns are match_input's normalised ones (the values the level compares).
TERM_FREQUENCY_MINIMUM_U = {"first_name": 1e-4, "last_name": 1e-4, "postcode": 1e-5}


def _tf(column: str) -> dict[str, Any]:
    return {
        "tf_adjustment_column": column,
        "tf_adjustment_weight": 1.0,
        "tf_minimum_u_value": TERM_FREQUENCY_MINIMUM_U[column],
    }


def comparisons() -> list[dict[str, Any]]:
    """Splink comparisons (levels with starting m/u that EM and random sampling refine)."""
    return [
        {
            "output_column_name": "first_name",
            "comparison_description": "first name: exact, nickname, swapped with last, fuzzy",
            "comparison_levels": [
                _null("first_name_l is null or first_name_r is null"),
                _level("first_name_l = first_name_r", "exact", 0.8, 0.03, **_tf("first_name")),
                _level("list_has_any(first_names_l, first_names_r)", "nickname", 0.1, 0.005),
                _level("first_name_l = last_name_r", "swapped with last name", 0.01, 0.0005),
                _level("damerau_levenshtein(first_name_l, first_name_r) <= 1", "one edit", 0.04,
                       0.002),
                _level("jaro_winkler_similarity(first_name_l, first_name_r) >= 0.85",
                       "jaro-winkler >= 0.85", 0.03, 0.01),
                _else(0.02, 0.95),
            ],
        },
        {
            "output_column_name": "last_name",
            "comparison_description": "last name: exact, swapped with first, fuzzy",
            "comparison_levels": [
                _null("last_name_l is null or last_name_r is null"),
                _level("last_name_l = last_name_r", "exact", 0.88, 0.02, **_tf("last_name")),
                _level("last_name_l = first_name_r", "swapped with first name", 0.01, 0.0005),
                _level("jaro_winkler_similarity(last_name_l, last_name_r) >= 0.9",
                       "jaro-winkler >= 0.9", 0.08, 0.01),
                _else(0.03, 0.97),
            ],
        },
        {
            "output_column_name": "date_of_birth",
            "comparison_description": "birth date: exact, day/month swapped, one digit, year",
            "comparison_levels": [
                _null("dob_l is null or dob_r is null"),
                _level("dob_l = dob_r", "exact", 0.9, 0.0001),
                _level("year(dob_l) = year(dob_r) and month(dob_l) = day(dob_r) "
                       "and day(dob_l) = month(dob_r)", "day and month swapped", 0.03, 0.00001),
                _level("levenshtein(dob_text_l, dob_text_r) <= 1", "one character", 0.04,
                       0.002),
                _level("abs(datediff('day', dob_l, dob_r)) <= 366", "within a year", 0.01,
                       0.02),
                _else(0.02, 0.98),
            ],
        },
        {
            "output_column_name": "street_address",
            "comparison_description": "street address: exact, house number and fuzzy street",
            "comparison_levels": [
                _null("street_address_l is null or street_address_r is null"),
                _level("street_address_l = street_address_r", "exact", 0.9, 0.0002),
                _level("house_number_l = house_number_r and "
                       "jaro_winkler_similarity(street_address_l, street_address_r) >= 0.88",
                       "same number and similar street", 0.06, 0.0005),
                # the street name alone, spaces dropped: a missing or different house number,
                # a space typed inside a word ("s treet")
                _level("jaro_winkler_similarity(street_name_l, street_name_r) >= 0.88",
                       "similar street name", 0.02, 0.01),
                _else(0.02, 0.99),
            ],
        },
        {
            "output_column_name": "locality",
            "comparison_description": "postcode, city and state",
            "comparison_levels": [
                _null("(postcode_l is null or postcode_r is null) "
                      "and (city_l is null or city_r is null)"),
                _level("postcode_l = postcode_r", "same postcode", 0.9, 0.005, **_tf("postcode")),
                # a typed or transposed postcode digit
                _level("city_l = city_r and damerau_levenshtein(postcode_l, postcode_r) <= 1",
                       "same city and postcode one edit apart", 0.03, 0.0005),
                _level("city_l = city_r and coalesce(state_l = state_r, true)",
                       "same city and state", 0.04, 0.1),
                _level("damerau_levenshtein(postcode_l, postcode_r) <= 1",
                       "postcode one edit apart", 0.01, 0.01),
                _level("state_l = state_r", "same state", 0.01, 0.1),
                _else(0.02, 0.8),
            ],
        },
        {
            "output_column_name": "email",
            "comparison_description": "email: exact, same user name, fuzzy",
            "comparison_levels": [
                _null("email_l is null or email_r is null"),
                _level("email_l = email_r", "exact", 0.85, 0.00001),
                _level("email_user_l = email_user_r", "same user name", 0.05, 0.00001),
                _level("jaro_winkler_similarity(email_l, email_r) >= 0.88", "jaro-winkler >= 0.88",
                       0.05, 0.001),
                _else(0.05, 0.999),
            ],
        },
        {
            "output_column_name": "phone",
            "comparison_description": "phone (E.164): exact, one or two digits apart",
            "comparison_levels": [
                _null("phone_l is null or phone_r is null"),
                _level("phone_l = phone_r", "exact", 0.85, 0.00001),
                _level("levenshtein(phone_l, phone_r) <= 2", "one or two digits", 0.05, 0.0005),
                _else(0.1, 0.999),
            ],
        },
    ]  # fmt: skip


def settings_dict() -> dict[str, Any]:
    """The Splink model settings, untrained."""
    return {
        "link_type": "dedupe_only",
        "unique_id_column_name": "record_node",
        "probability_two_random_records_match": 1e-6,
        "blocking_rules_to_generate_predictions": [
            {"blocking_rule": rule, "sql_dialect": "duckdb"} for rule in PREDICTION_BLOCKING_RULES
        ],
        "comparisons": comparisons(),
        "retain_intermediate_calculation_columns": True,  # per-comparison weights: evidence
        "retain_matching_columns": False,
        "additional_columns_to_retain": [],
    }


def settings_hash() -> str:
    """Hash of everything that makes a stored model reusable: settings and normalisation."""
    payload = json.dumps(
        {
            "settings": settings_dict(),
            "training": [
                TRAINING_BLOCKING_RULES,
                [COMPARISONS_PER_RECORD, MIN_COMPARISONS],
                PRIOR_RULES,
                PRIOR_RULES_RECALL,
                {"em_floor": em_floor._EM_FLOOR},
            ],
            "nicknames": NICKNAMES,
            "streets": STREET_ABBREVIATIONS,
            "normalisation": NORMALISATION_VERSION,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def _level_labels() -> dict[tuple[str, int], str]:
    """Label of each (comparison, comparison vector value); Splink numbers the non-null levels
    from the number of levels minus one down to 0 (the else level)."""
    labels = {}
    for comparison in comparisons():
        levels = [lv for lv in comparison["comparison_levels"] if not lv.get("is_null_level")]
        for i, level in enumerate(levels):
            labels[(comparison["output_column_name"], len(levels) - 1 - i)] = level[
                "label_for_charts"
            ]
    return labels


def _linker(con: duckdb.DuckDBPyConnection, model: dict[str, Any], scratch_schema: str):
    from splink import DuckDBAPI, Linker

    db_api = DuckDBAPI(connection=con, output_schema=scratch_schema)
    # unqualified: Splink reads columns by table name; output_schema made the scratch one default
    frame = db_api.register("match_input", dataset_display_name="crm_records")
    return Linker(frame, model, log_level=None)
