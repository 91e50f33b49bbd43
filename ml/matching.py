"""Probabilistic record matching of CRM records with Splink on the warehouse's DuckDB connection.

`match_records` reads `staging.stg_crm__customers`, normalises names, birth dates, addresses and
contact data into a scratch schema, trains (or reuses) an unsupervised Splink model (u by random
sampling, m by EM, term-frequency adjustments on names and postcode), predicts pairs above a
probability threshold and writes them with their evidence to `intermediate.identity_match_edges`.
The trained model is versioned in `ml.model_runs` (model_name `identity_matching`) and reused
until the settings change or a retrain is asked for. Pure Python: never imports dagster.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import inspect
import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import duckdb

from ml import registry

MODEL_NAME = "identity_matching"
# Bump when the input normalisation changes: a stored model is then retrained.
NORMALISATION_VERSION = "3"
SCRATCH_SCHEMA = "identity_scratch"
EDGES_TABLE = "intermediate.identity_match_edges"
SOURCE_TABLE = "staging.stg_crm__customers"

# Common English given-name variants: canonical -> short forms. A nickname may stand for several.
NICKNAMES: dict[str, tuple[str, ...]] = {
    "abigail": ("abby", "gail"),
    "alexander": ("alex", "al", "sasha", "xander"),
    "alexandra": ("alex", "sandra", "sasha", "lexi"),
    "alfred": ("alf", "fred", "freddie"),
    "andrew": ("andy", "drew"),
    "anthony": ("tony", "ant"),
    "barbara": ("barb", "babs"),
    "benjamin": ("ben", "benny", "benji"),
    "catherine": ("cathy", "kate", "katie", "cat"),
    "charles": ("charlie", "chuck", "chas"),
    "charlotte": ("charlie", "lottie"),
    "christine": ("chris", "chrissy", "tina"),
    "christopher": ("chris", "kit", "topher"),
    "daniel": ("dan", "danny"),
    "david": ("dave", "davey"),
    "deborah": ("debbie", "deb", "debby"),
    "donald": ("don", "donnie"),
    "dorothy": ("dot", "dottie", "dolly"),
    "edward": ("ed", "eddie", "ted", "ned"),
    "elizabeth": ("liz", "beth", "betty", "eliza", "lizzie", "libby", "betsy"),
    "emily": ("em", "emmy"),
    "frances": ("fran", "frankie"),
    "francis": ("frank", "frankie"),
    "frederick": ("fred", "freddie"),
    "gregory": ("greg",),
    "harold": ("harry", "hal"),
    "henry": ("harry", "hank", "hal"),
    "isabella": ("bella", "izzy", "isabel"),
    "jacob": ("jake",),
    "james": ("jim", "jimmy", "jamie"),
    "jennifer": ("jen", "jenny", "jenn"),
    "jessica": ("jess", "jessie"),
    "john": ("jack", "johnny", "jon"),
    "jonathan": ("jon", "jonny"),
    "joseph": ("joe", "joey"),
    "jeffrey": ("jeff",),
    "joshua": ("josh",),
    "katherine": ("kate", "kathy", "katie", "kat", "kay"),
    "kathleen": ("kathy", "kate", "kay"),
    "kenneth": ("ken", "kenny"),
    "kimberly": ("kim", "kimmy"),
    "lawrence": ("larry",),
    "margaret": ("peggy", "maggie", "meg", "marge", "margie", "greta"),
    "matthew": ("matt", "matty"),
    "michael": ("mike", "mikey", "mick", "mickey"),
    "nicholas": ("nick", "nicky", "nico"),
    "pamela": ("pam",),
    "patricia": ("pat", "patty", "tricia", "trish"),
    "patrick": ("pat", "paddy"),
    "peter": ("pete",),
    "philip": ("phil",),
    "rebecca": ("becky", "becca", "beck"),
    "richard": ("rick", "dick", "rich", "richie", "ricky"),
    "robert": ("bob", "rob", "bobby", "robbie", "bert"),
    "ronald": ("ron", "ronnie"),
    "samantha": ("sam", "sammy"),
    "samuel": ("sam", "sammy"),
    "stephen": ("steve", "stevie"),
    "steven": ("steve", "stevie"),
    "susan": ("sue", "susie", "suzy"),
    "theodore": ("ted", "teddy", "theo"),
    "thomas": ("tom", "tommy"),
    "timothy": ("tim", "timmy"),
    "victoria": ("vicky", "vickie", "tori"),
    "william": ("bill", "will", "billy", "willie", "liam"),
    "zachary": ("zach", "zack"),
}

# Street words written out or abbreviated: compared in their short form.
STREET_ABBREVIATIONS: dict[str, str] = {
    "street": "st",
    "avenue": "ave",
    "road": "rd",
    "boulevard": "blvd",
    "lane": "ln",
    "drive": "dr",
    "court": "ct",
    "place": "pl",
    "square": "sq",
    "terrace": "ter",
    "highway": "hwy",
    "parkway": "pkwy",
    "north": "n",
    "south": "s",
    "east": "e",
    "west": "w",
    "apartment": "apt",
    "suite": "ste",
}

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
TRAINING_BLOCKING_KEYS: tuple[BlockingKeys, ...] = (
    _same("postcode", "first_key", "last_name"),
    _same("dob", "last_name"),
    _same("dob", "first_key"),
)
TRAINING_BLOCKING_RULES = tuple(blocking_rule_sql(k) for k in TRAINING_BLOCKING_KEYS)

# A pair whose first names disagree outright while birth dates are not the same is two people
# (a family sharing an address, email or phone), whatever else agrees: the model's independence
# assumption fails exactly there.
CONFLICT_RULE = (
    "first_name_level = 'else' and date_of_birth_level not in ('exact', 'day and month swapped')"
)

# Rules that find certain matches, for the prior (probability two random records match).
PRIOR_RULES = (
    "l.first_key = r.first_key and l.last_name = r.last_name and l.dob = r.dob "
    "and l.postcode = r.postcode",
)
PRIOR_RULES_RECALL = 0.6

logger = logging.getLogger(__name__)


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
                {"em_floor": _EM_FLOOR},
            ],
            "nicknames": NICKNAMES,
            "streets": STREET_ABBREVIATIONS,
            "normalisation": NORMALISATION_VERSION,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass
class MatchResult:
    """What one matching run did, for asset metadata and ml.model_runs."""

    records: int = 0
    edges: int = 0
    trained: bool = False
    model_version: str | None = None
    threshold: float = 0.95
    timings: dict[str, float] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    comparisons_scored: int = 0
    blocking: list[dict[str, Any]] = field(default_factory=list)
    status: str = ""  # trained, reused, fallback or skipped
    reason: str = ""

    def as_metadata(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "edges": self.edges,
            "trained": self.trained,
            "model_version": self.model_version,
            "status": self.status,
            "reason": self.reason,
            "threshold": self.threshold,
            "comparisons_scored": self.comparisons_scored,
            "timings_s": {k: round(v, 2) for k, v in self.timings.items()},
            "training": self.training,
            "blocking": self.blocking,
            "warnings": self.warnings,
        }


def _nickname_rows() -> list[tuple[str, str]]:
    rows = {(name, name) for name in NICKNAMES}
    for canonical, shorts in NICKNAMES.items():
        rows.update((short, canonical) for short in shorts)
    return sorted(rows)


def prepare_input(
    con: duckdb.DuckDBPyConnection,
    source_table: str = SOURCE_TABLE,
    scratch_schema: str = SCRATCH_SCHEMA,
) -> int:
    """Write `<scratch>.match_input` (one normalised row per CRM record); return its row count.

    `source_table` and `scratch_schema` are identifiers chosen by code, never user values.
    """
    _check_identifier(source_table)
    _check_identifier(scratch_schema)
    con.execute(f"create schema if not exists {scratch_schema}")
    con.execute(
        f"create or replace table {scratch_schema}.nicknames (name varchar, canonical varchar)"
    )
    con.executemany(f"insert into {scratch_schema}.nicknames values (?, ?)", _nickname_rows())
    con.execute(
        f"create or replace table {scratch_schema}.street_words (word varchar, short varchar)"
    )
    con.executemany(
        f"insert into {scratch_schema}.street_words values (?, ?)",
        sorted(STREET_ABBREVIATIONS.items()),
    )
    con.execute(
        f"""
        create or replace table {scratch_schema}.match_input as
        with
        source as (
            select
                record_node,
                nullif(regexp_replace(lower(strip_accents(first_name)), '[^a-z]', '', 'g'), '')
                    as first_name,
                nullif(regexp_replace(lower(strip_accents(last_name)), '[^a-z]', '', 'g'), '')
                    as last_name,
                date_of_birth as dob,
                nullif(trim(regexp_replace(lower(street_address), '[^a-z0-9 ]', ' ', 'g')), '')
                    as street_text,
                nullif(regexp_replace(upper(postcode), '[^A-Z0-9]', '', 'g'), '') as postcode,
                nullif(regexp_replace(lower(city), '[^a-z]', '', 'g'), '') as city,
                nullif(regexp_replace(lower(state), '[^a-z]', '', 'g'), '') as state,
                email,
                phone_e164 as phone
            from {source_table}
        ),
        street_tokens as (
            -- abbreviate each word of the street (avenue -> ave) so spellings compare equal
            select
                source.record_node,
                string_agg(coalesce(street_words.short, token.word), ' ' order by token.pos)
                    as street_address
            from source,
                unnest(string_split(regexp_replace(source.street_text, ' +', ' ', 'g'), ' '))
                    with ordinality as token(word, pos)
            left join {scratch_schema}.street_words
                on token.word = street_words.word
            where source.street_text is not null
            group by source.record_node
        ),
        first_variants as (
            select source.record_node, list_sort(list_distinct(list(nicknames.canonical)))
                as canonicals
            from source
            inner join {scratch_schema}.nicknames
                on source.first_name = nicknames.name
            group by source.record_node
        )
        select
            source.record_node,
            source.first_name,
            source.last_name,
            -- the name plus every full name it may be short for
            list_distinct(list_concat([source.first_name], coalesce(first_variants.canonicals,
                [])))
                as first_names,
            coalesce(first_variants.canonicals[1], source.first_name) as first_key,
            left(source.first_name, 1) as first_initial,
            source.dob,
            strftime(source.dob, '%Y-%m-%d') as dob_text,
            street_tokens.street_address,
            nullif(regexp_extract(street_tokens.street_address, '^[0-9]+[a-z]?'), '')
                as house_number,
            nullif(replace(
                regexp_replace(street_tokens.street_address, '^[0-9]+[a-z]? *', ''), ' ', ''
            ), '') as street_name,
            source.postcode,
            source.city,
            source.state,
            source.email,
            nullif(split_part(source.email, '@', 1), '') as email_user,
            source.phone
        from source
        left join street_tokens on source.record_node = street_tokens.record_node
        left join first_variants on source.record_node = first_variants.record_node
        """
    )
    return _count(con, f"{scratch_schema}.match_input")


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    _check_identifier(table)
    # fetchall, not fetchone: this DuckDB keeps a half-read result open on the connection
    return int(con.execute(f"select count(*) from {table}").fetchall()[0][0])


def _check_identifier(name: str) -> None:
    parts = name.split(".")
    if not 1 <= len(parts) <= 2 or not all(p.isidentifier() for p in parts):
        raise ValueError(f"not a plain (schema.)table identifier: {name!r}")


# Splink 5.0.0 workaround (remove when Splink bounds its own EM estimates). EM's M step sets a
# level's m to its share of the session's expected matches. A level that only non-matches take
# (e.g. blocked on birth date and last name: two people who differ in address and contact data)
# keeps a share that shrinks by a large factor every iteration; as the same pairs sit in the else
# level of several comparisons, their weights add up and the exponent grows several-fold per
# iteration, so m falls below 1e-300, or to 0.0, within two or three iterations, and the setter's
# check (comparison_level.py, M_U_CLAMP_MIN = 1e-300, splink PR #2851) raises ValueError from
# inside EM. Even a level that converges first carries -150 bits or more (a veto whatever else
# agrees), which the next session's E step inherits.
# Splink has no hook for this, so while our EM sessions run, the M step's shares are floored at
# _EM_FLOOR = 1e-6, the m (and u) Splink's EM itself uses for a level a session never observes: a
# level observed only among non-matches is the same evidence (no match there), so it gets the
# same value. One level then gives at most log2(u / 1e-6), about -20 bits for an else level (u
# near 1), comparable to the strongest agreement (exact birth date, street, email: +13 to +15
# bits) instead of overriding everything. The floor binds only where a session saw (next to) no
# match at a level; the mass it adds (at most 1e-6 per level) comes off the comparison's largest
# share.
_EM_FLOOR = 1e-6
_LAMBDA_RECORD = "_probability_two_random_records_match"


def _floor_proportions(records: list[dict[str, Any]]) -> list[tuple[str, int, str]]:
    """Raise every m and u share below _EM_FLOOR to it, taking the added mass off the largest
    share of the same comparison (in place); return the (comparison, comparison vector value,
    "m" or "u") raised. `records` are the rows Splink's M step reads (output_column_name,
    comparison_vector_value, m_probability, u_probability)."""
    raised: set[tuple[str, int, str]] = set()
    by_comparison: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        if record["output_column_name"] != _LAMBDA_RECORD:
            by_comparison.setdefault(record["output_column_name"], []).append(record)
    for name, rows in by_comparison.items():
        for key in ("m_probability", "u_probability"):
            shares = [r for r in rows if isinstance(r[key], float | int) and math.isfinite(r[key])]
            added = 0.0
            for row in shares:
                if row[key] < _EM_FLOOR:
                    added += _EM_FLOOR - row[key]
                    row[key] = _EM_FLOOR
                    raised.add((name, int(row["comparison_vector_value"]), key[0]))
            if added:
                largest = max(shares, key=lambda r: r[key])
                largest[key] = max(largest[key] - added, _EM_FLOOR)
    return sorted(raised)


@contextlib.contextmanager
def _em_probability_floor() -> Iterator[list[tuple[str, int, str]]]:
    """While active, Splink's EM M step floors m and u shares (see _floor_proportions); yields a
    list holding the levels the latest M step raised. Patches one function of the pinned Splink's
    EM module, and fails loudly if that module no longer has the shape the patch relies on."""
    from splink.internals import expectation_maximisation as em

    original = getattr(em, "compute_proportions_for_new_parameters", None)
    runner = getattr(em, "expectation_maximisation", None)
    if (
        original is None
        or runner is None
        or getattr(original, "_microseg_em_floor", False)  # already patched (nested use)
        or list(inspect.signature(original).parameters) != ["df_params"]
        # EM must look the function up in its module at call time for the patch to take
        or "compute_proportions_for_new_parameters" not in runner.__code__.co_names
    ):
        raise RuntimeError(
            "splink.internals.expectation_maximisation is not what the EM floor in "
            "ml/matching.py patches (Splink 5.0.0): revisit that workaround for this Splink"
        )
    raised: list[tuple[str, int, str]] = []

    def floored(df_params):
        records = original(df_params)
        raised[:] = _floor_proportions(records)
        return records

    floored._microseg_em_floor = True
    em.compute_proportions_for_new_parameters = floored
    try:
        yield raised
    finally:
        em.compute_proportions_for_new_parameters = original


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


def train_model(
    con: duckdb.DuckDBPyConnection,
    *,
    seed: int = 42,
    max_pairs_u: float = 5e6,
    em_max_pairs: float | None = 2e6,
    scratch_schema: str = SCRATCH_SCHEMA,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Unsupervised training on `<scratch>.match_input`: prior from certain-match rules, u by
    random sampling, m by EM. Returns (model JSON, training metrics)."""
    linker = _linker(con, settings_dict(), scratch_schema)
    training = linker.training
    metrics: dict[str, Any] = {"em_sessions": []}
    started = time.perf_counter()
    training.estimate_probability_two_random_records_match(
        list(PRIOR_RULES), recall=PRIOR_RULES_RECALL
    )
    training.estimate_u_using_random_sampling(max_pairs=max_pairs_u, seed=seed)
    metrics["u_seconds"] = round(time.perf_counter() - started, 2)
    labels = _level_labels()
    for rule in TRAINING_BLOCKING_RULES:
        t0 = time.perf_counter()
        with _em_probability_floor() as raised:
            session = training.estimate_parameters_using_expectation_maximisation(
                rule, estimate_without_term_frequencies=True, max_pairs=em_max_pairs
            )
        history = getattr(session, "_lambda_history_records", None) or []
        metrics["em_sessions"].append(
            {
                "blocking_rule": rule,
                "iterations": len(history),
                # m shares at the floor after the last iteration: no pair at that level looked
                # like a match (u is fixed from random sampling, its floor is moot)
                "levels_at_floor": [
                    f"{c}: {labels.get((c, v), v)}" for c, v, kind in raised if kind == "m"
                ],
                "seconds": round(time.perf_counter() - t0, 2),
            }
        )
    # A level no session could estimate keeps its starting m (Splink keeps the value it was given)
    model = linker.misc.save_model_to_json()
    metrics["probability_two_random_records_match"] = model.get(
        "probability_two_random_records_match"
    )
    _drop_splink_tables(con, scratch_schema)
    return model, metrics


def _drop_splink_tables(con: duckdb.DuckDBPyConnection, scratch_schema: str) -> None:
    """Drop Splink's own cache tables from the scratch schema, keeping our inputs."""
    rows = con.execute(
        "select table_name, table_type from information_schema.tables "
        "where table_schema = ? and table_name like '\\_\\_splink%' escape '\\'",
        [scratch_schema],
    ).fetchall()
    for name, kind in rows:
        _check_identifier(name)
        keyword = "view" if kind == "VIEW" else "table"
        con.execute(f'drop {keyword} if exists {scratch_schema}."{name}"')


def _without_timings(value: Any) -> Any:
    """A copy of nested metrics without wall-clock fields, which differ from run to run."""
    if isinstance(value, dict):
        return {
            k: _without_timings(v)
            for k, v in value.items()
            if k not in ("seconds", "train_seconds") and not k.endswith("_seconds")
        }
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def append_model_run(
    con: duckdb.DuckDBPyConnection,
    model_name: str,
    version: str,
    as_of: date | None,
    params: dict[str, Any],
    metrics: dict[str, Any],
    features: list[str],
    skip_known_version: bool = False,
) -> None:
    """One ml.model_runs row (status and reason from `metrics`); with skip_known_version the
    same model on the same data records nothing new."""
    row = registry.run_row(model_name, version, as_of, params, metrics, features)
    registry.append_model_runs(con, [row], skip_known_versions=skip_known_version)


def load_stored_model(
    con: duckdb.DuckDBPyConnection, wanted_hash: str
) -> tuple[str, dict[str, Any]] | None:
    """The latest stored model trained with these settings: (version, model JSON), or None."""
    stored = registry.latest_trained(con, MODEL_NAME, "settings_hash", wanted_hash)
    return None if stored is None else (stored[0], json.loads(stored[1]))


def create_edges_table(con: duckdb.DuckDBPyConnection) -> None:
    """The (possibly empty) edges table, so the identity layer can always read it."""
    con.execute("create schema if not exists intermediate")
    weights = ", ".join(f"mw_{c} double" for c in COMPARISON_COLUMNS)
    con.execute(
        f"""
        create or replace table {EDGES_TABLE} (
            left_record_node varchar not null,
            right_record_node varchar not null,
            match_probability double not null,
            match_weight double not null,
            {weights},
            evidence varchar,
            agreeing_fields varchar,
            blocking_rule integer,
            is_conflict boolean not null,
            model_version varchar
        )
        """
    )


def _level_weights(model: dict[str, Any]) -> dict[str, list[tuple[float, str]]]:
    """(match weight, label) of each non-null level per comparison of a (trained) model."""
    out: dict[str, list[tuple[float, str]]] = {}
    for comparison in model["comparisons"]:
        levels = []
        for level in comparison["comparison_levels"]:
            if level.get("is_null_level"):
                continue
            m, u = level.get("m_probability"), level.get("u_probability")
            if m and u:
                levels.append((math.log2(m / u), level.get("label_for_charts", "")))
        out[comparison["output_column_name"]] = levels
    return out


def _evidence_case(column: str, levels: list[tuple[float, str]]) -> str:
    """SQL naming the level a per-comparison weight came from (weights are model numbers)."""
    whens = " ".join(
        f"when abs(mw_{column} - ({weight!r})) < 1e-9 then '{_label(label)}'"
        for weight, label in levels
    )
    return f"case when mw_{column} = 0 then 'null' {whens} else 'other' end"


def _label(text: str) -> str:
    if not all(ch.isalnum() or ch in " <>=./-" for ch in text):
        raise ValueError(f"unexpected character in a level label: {text!r}")
    return text


def _write_edges(
    con: duckdb.DuckDBPyConnection,
    predictions_table: str,
    model: dict[str, Any],
    model_version: str,
) -> int:
    _check_identifier(predictions_table)
    levels = _level_weights(model)
    level_columns = ", ".join(
        f"{_evidence_case(c, levels.get(c, []))} as {c}_level" for c in COMPARISON_COLUMNS
    )
    evidence = ", ".join(f"'{c}', {c}_level" for c in COMPARISON_COLUMNS)
    agreeing = " || ".join(
        f"case when mw_{c} > 0 then '{c},' else '' end" for c in COMPARISON_COLUMNS
    )
    # A comparison's weight as scored: its level's weight (which names the level) plus the
    # term-frequency adjustment Splink adds for the value, so the mw_* and the prior sum to
    # match_weight.
    schema, _, table = predictions_table.rpartition(".")
    columns = {
        row[0]
        for row in con.execute(
            "select column_name from information_schema.columns "
            "where table_schema = ? and table_name = ?",
            [schema, table],
        ).fetchall()
    }
    weights = ", ".join(
        f"mw_{c} + coalesce(mw_tf_adj_{c}, 0)" if f"mw_tf_adj_{c}" in columns else f"mw_{c}"
        for c in COMPARISON_COLUMNS
    )
    create_edges_table(con)
    con.execute(
        f"""
        insert into {EDGES_TABLE}
        with scored as (
            select *, {level_columns} from {predictions_table}
        )
        select
            least(record_node_l, record_node_r),
            greatest(record_node_l, record_node_r),
            match_probability,
            match_weight,
            {weights},
            json_object({evidence})::varchar,
            rtrim({agreeing}, ','),
            try_cast(match_key as integer),
            coalesce({CONFLICT_RULE}, false),
            ?
        from scored
        """,
        [model_version],
    )
    return _count(con, EDGES_TABLE)


# Too little data to train: an EM session needs pairs that look like matches and pairs that do
# not. A session whose blocking rule yields fewer pairs than this is not run on this data.
MIN_PAIRS_PER_EM_SESSION = 10
STATUS_TRAINED, STATUS_FALLBACK, STATUS_SKIPPED = (
    registry.TRAINED,
    registry.FALLBACK,
    registry.SKIPPED,
)


def _source_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    schema, _, name = table.rpartition(".")
    return bool(
        con.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = ? and table_name = ?",
            [schema or "main", name],
        ).fetchall()[0][0]
    )


def untrainable_reason(
    con: duckdb.DuckDBPyConnection,
    scratch_schema: str,
    records: int,
    min_records_to_train: int,
) -> str | None:
    """Why this data cannot train the model (too few records, or an EM session's blocking rule
    yields too few pairs), or None when it can."""
    if records < min_records_to_train:
        return f"{records} CRM records, fewer than the {min_records_to_train} needed to train"
    table = f"{scratch_schema}.match_input"
    for rule, keys in zip(TRAINING_BLOCKING_RULES, TRAINING_BLOCKING_KEYS, strict=True):
        pairs = rule_comparisons(con, table, keys)
        if pairs < MIN_PAIRS_PER_EM_SESSION:
            return (
                f"EM session blocked on {rule!r} has {pairs} record pairs, fewer than the "
                f"{MIN_PAIRS_PER_EM_SESSION} needed to train"
            )
    return None


def _fallback_model(con: duckdb.DuckDBPyConnection, wanted: str) -> tuple[dict[str, Any], str, str]:
    """The model to score with when this run cannot train: the latest trained model of these
    settings in ml.model_runs, else the documented starting parameters (`settings_dict`).
    Returns (model, version scored with, what it is)."""
    stored = load_stored_model(con, wanted)
    if stored is not None:
        version, model = stored
        return model, version, f"the last trained model ({version})"
    return settings_dict(), f"{wanted[:12]}.untrained", "the documented starting parameters"


def _record_status(
    con: duckdb.DuckDBPyConnection,
    result: MatchResult,
    status: str,
    reason: str,
    as_of: date | None,
    wanted: str,
    model: dict[str, Any] | None,
) -> None:
    """A row in ml.model_runs saying this run did not train, and why; named by what happened, so
    a re-run on the same data records nothing new."""
    metrics = {
        "status": status,
        "reason": reason,
        "settings_hash": wanted,
        "records": result.records,
        "model_used": result.model_version,
    }
    digest = hashlib.sha1(json.dumps(metrics, sort_keys=True).encode()).hexdigest()[:8]
    append_model_run(
        con,
        MODEL_NAME,
        f"{wanted[:12]}.{status}.{digest}",
        as_of,
        model or {},
        metrics,
        list(COMPARISON_COLUMNS),
        skip_known_version=True,
    )
    result.status, result.reason = status, reason


def match_records(
    con: duckdb.DuckDBPyConnection,
    *,
    threshold: float = 0.95,
    retrain: bool = False,
    seed: int = 42,
    as_of: date | None = None,
    source_table: str = SOURCE_TABLE,
    scratch_schema: str = SCRATCH_SCHEMA,
    max_pairs_u: float = 5e6,
    min_records_to_train: int = 50,
) -> MatchResult:
    """Score CRM record pairs and write `intermediate.identity_match_edges` (pairs with
    match_probability >= threshold, with per-comparison levels and evidence).

    The model is the stored one of these settings unless `retrain`; else trained on this data.
    When the data cannot train it (too few records or pairs, or Splink's EM fails), the run
    falls back to the last trained model of these settings, else to the starting parameters,
    warns, and records a `fallback` row in ml.model_runs (`metrics`: status and reason). Fewer
    than two records: nothing to match, a `skipped` row."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must lie strictly between 0 and 1, got {threshold}")
    result = MatchResult(threshold=threshold)
    t0 = time.perf_counter()
    wanted = settings_hash()
    if not _source_exists(con, source_table):
        create_edges_table(con)
        reason = f"no CRM records ({source_table} does not exist)"
        result.warnings.append(f"matching skipped: {reason}")
        _record_status(con, result, STATUS_SKIPPED, reason, as_of, wanted, None)
        return result
    result.records = prepare_input(con, source_table, scratch_schema)
    result.timings["prepare"] = time.perf_counter() - t0
    try:
        if result.records < 2:
            create_edges_table(con)
            reason = f"{result.records} CRM record(s): fewer than two, nothing to match"
            result.warnings.append(f"matching skipped: {reason}")
            _record_status(con, result, STATUS_SKIPPED, reason, as_of, wanted, None)
            return result
        stored = None if retrain else load_stored_model(con, wanted)
        model: dict[str, Any] | None = None
        if stored is not None:
            result.model_version, model = stored
            result.status = "reused"
        else:
            reason = untrainable_reason(con, scratch_schema, result.records, min_records_to_train)
            if reason is None:
                t1 = time.perf_counter()
                try:
                    model, training = train_model(
                        con, seed=seed, max_pairs_u=max_pairs_u, scratch_schema=scratch_schema
                    )
                except Exception as exc:  # noqa: BLE001 - only Splink's training failures
                    reason = _training_failure(exc)
                    _drop_splink_tables(con, scratch_schema)
            if reason is None:
                result.timings["train"] = time.perf_counter() - t1
                # Stored without Splink's random linker id and without timings (those go to the
                # asset's metadata), and named by settings and trained parameters, not the
                # clock: the same data trains the same model, and a resumed run records the same
                # row.
                model.pop("linker_uid", None)
                fitted = hashlib.sha1(json.dumps(model, sort_keys=True, default=str).encode())
                result.model_version = f"{wanted[:12]}.{fitted.hexdigest()[:8]}"
                result.trained = True
                result.status = STATUS_TRAINED
                result.training = {
                    **training,
                    "status": STATUS_TRAINED,
                    "settings_hash": wanted,
                    "records": result.records,
                }
                append_model_run(
                    con,
                    MODEL_NAME,
                    result.model_version,
                    as_of,
                    model,
                    _without_timings(result.training),
                    list(COMPARISON_COLUMNS),
                    skip_known_version=True,
                )
            else:
                model, result.model_version, used = _fallback_model(con, wanted)
                result.warnings.append(f"matching not trained: {reason}; scored with {used}")
                _record_status(con, result, STATUS_FALLBACK, reason, as_of, wanted, None)
        t2 = time.perf_counter()
        rules, result.blocking = choose_blocking_rules(
            con, f"{scratch_schema}.match_input", result.records
        )
        model = {
            **model,
            "blocking_rules_to_generate_predictions": [
                {"blocking_rule": rule, "sql_dialect": "duckdb"} for rule in rules
            ],
        }
        linker = _linker(con, model, scratch_schema)
        predictions = linker.inference.predict(
            threshold_match_probability=threshold, warning_mode="never"
        )
        result.timings["predict"] = time.perf_counter() - t2
        t3 = time.perf_counter()
        result.edges = _write_edges(
            con, f"{scratch_schema}.{predictions.physical_name}", model, result.model_version
        )
        result.timings["write"] = time.perf_counter() - t3
        return result
    finally:
        # Splink's DuckDBAPI set the connection's default schema to the scratch one
        con.execute("set schema 'main'")
        con.execute(f"drop schema if exists {scratch_schema} cascade")
        result.timings["total"] = time.perf_counter() - t0


def _training_failure(exc: Exception) -> str:
    """The reason to record when Splink's training fails on this data; re-raises anything else."""
    from splink.internals.exceptions import EMTrainingException

    if isinstance(exc, EMTrainingException):
        return f"Splink's EM training failed on this data: {str(exc).strip()[:300]}"
    if isinstance(exc, ValueError) and "below the minimum allowed" in str(exc):
        # Splink 5.0 rejects an m/u estimate below 1e-300; the EM floor prevents the one way we
        # know EM gets there, but should another, this run still completes
        return "Splink's EM training failed (an m/u estimate underflowed below 1e-300)"
    raise exc


OVERRIDE_COLUMNS = (
    "left_source_system",
    "left_source_key",
    "right_source_system",
    "right_source_key",
    "action",
    "reason",
)
OVERRIDE_ACTIONS = ("never_merge", "always_merge")


def write_overrides(con: duckdb.DuckDBPyConnection, path: str | Path | None) -> int:
    """Load the manual overrides CSV into `intermediate.identity_overrides` (replaced each run;
    a missing file means no overrides). Raise ValueError naming the file and row when invalid."""
    con.execute("create schema if not exists intermediate")
    con.execute(
        "create or replace table intermediate.identity_overrides ("
        "left_source_system varchar not null, left_source_key varchar not null, "
        "right_source_system varchar not null, right_source_key varchar not null, "
        "action varchar not null, reason varchar)"
    )
    if path is None or not Path(path).is_file():
        return 0
    rows = []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = {(h or "").strip().lower() for h in reader.fieldnames or []}
        missing = [c for c in OVERRIDE_COLUMNS[:5] if c not in header]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
        for number, raw in enumerate(reader, start=2):
            if None in raw:
                raise ValueError(f"{path}, line {number}: more fields than columns (quote commas)")
            row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
            values = [row.get(c, "") for c in OVERRIDE_COLUMNS]
            if not all(values[:4]):
                raise ValueError(f"{path}, line {number}: a record side is blank")
            values[4] = values[4].lower()
            if values[4] not in OVERRIDE_ACTIONS:
                raise ValueError(
                    f"{path}, line {number}: action {values[4]!r} is not one of "
                    f"{', '.join(OVERRIDE_ACTIONS)}"
                )
            rows.append(values)
    if rows:
        con.executemany(
            "insert into intermediate.identity_overrides values (?, ?, ?, ?, ?, ?)", rows
        )
    return len(rows)


def write_identity_parameters(
    con: duckdb.DuckDBPyConnection,
    *,
    max_cluster_size: int,
    max_values_per_type: int,
    match_threshold: float,
    blocklist: list[str] | tuple[str, ...] = (),
) -> None:
    """The identity settings the dbt layer reads: `intermediate.identity_parameters`
    (name, value) and `intermediate.identity_blocklist` (value: extra junk identifier values)."""
    if max_cluster_size < 2 or max_values_per_type < 1:
        raise ValueError("max_cluster_size must be >= 2 and max_values_per_type >= 1")
    con.execute("create schema if not exists intermediate")
    con.execute(
        "create or replace table intermediate.identity_parameters "
        "(name varchar not null primary key, value double not null)"
    )
    con.executemany(
        "insert into intermediate.identity_parameters values (?, ?)",
        [
            ("max_cluster_size", float(max_cluster_size)),
            ("max_values_per_type", float(max_values_per_type)),
            ("match_threshold", float(match_threshold)),
        ],
    )
    con.execute("create or replace table intermediate.identity_blocklist (value varchar not null)")
    values = sorted({v.strip().lower() for v in blocklist if v and v.strip()})
    if values:
        con.executemany(
            "insert into intermediate.identity_blocklist values (?)", [(v,) for v in values]
        )


@dataclass
class ClusteringResult:
    """Component of each node after the guards, and the edges cut to get there."""

    labels: Any  # numpy int array: component index per node
    cut_edges: Any  # numpy int array: indexes (into the edge arrays) of the edges cut
    cut_reasons: list[str]


def constrained_components(
    n_nodes: int,
    source: Any,
    target: Any,
    weight: Any,
    *,
    node_size: Any,
    node_type: Any,
    max_size: int,
    max_values: int,
    never_pairs: list[tuple[int, int]] = (),
) -> ClusteringResult:
    """Connected components under guards: no component counts more than `max_size` (sum of
    `node_size`) or more than `max_values` nodes of one identifier type (`node_type` >= 0), and
    no never-merge pair shares a component. Components that break a guard are rebuilt by adding
    their edges strongest first and skipping an edge that would break a guard: the weakest edges
    are the ones cut (constrained single linkage). Edges must be ordered deterministically.
    """
    import numpy as np
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    source = np.asarray(source, dtype=np.int64)
    target = np.asarray(target, dtype=np.int64)
    weight = np.asarray(weight, dtype=np.float64)
    node_size = np.asarray(node_size, dtype=np.int64)
    node_type = np.asarray(node_type, dtype=np.int64)
    graph = coo_matrix(
        (np.ones(len(source), dtype=np.int8), (source, target)), shape=(n_nodes, n_nodes)
    ).tocsr()
    _, labels = connected_components(graph, directed=False)
    labels = labels.astype(np.int64)
    n_types = int(node_type.max()) + 1 if len(node_type) and node_type.max() >= 0 else 0

    sizes = np.bincount(labels, weights=node_size, minlength=labels.max(initial=-1) + 1)
    bad = sizes > max_size
    if n_types:
        typed = node_type >= 0
        per_type = np.zeros((len(sizes), n_types), dtype=np.int64)
        np.add.at(per_type, (labels[typed], node_type[typed]), 1)
        bad |= (per_type > max_values).any(axis=1)
    for a, b in never_pairs:
        if labels[a] == labels[b]:
            bad[labels[a]] = True
    if not bad.any():
        return ClusteringResult(labels, np.zeros(0, dtype=np.int64), [])

    in_bad = bad[labels[source]]
    edge_ids = np.flatnonzero(in_bad)
    # strongest first; a stable sort keeps the caller's deterministic order among equal weights
    edge_ids = edge_ids[np.argsort(-weight[edge_ids], kind="stable")]
    parent = np.arange(n_nodes, dtype=np.int64)
    size = node_size.copy()
    counts: dict[int, Any] = {}
    forbidden: dict[int, set[int]] = {}
    members: dict[int, set[int]] = {}
    for a, b in never_pairs:
        forbidden.setdefault(a, set()).add(b)
        forbidden.setdefault(b, set()).add(a)
        members.setdefault(a, set()).add(a)
        members.setdefault(b, set()).add(b)

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    def type_counts(root: int) -> Any:
        if root not in counts:
            vector = np.zeros(max(n_types, 1), dtype=np.int64)
            if n_types and node_type[root] >= 0:
                vector[node_type[root]] = 1
            counts[root] = vector
        return counts[root]

    cut: list[int] = []
    reasons: list[str] = []
    for edge in edge_ids.tolist():
        ru, rv = find(int(source[edge])), find(int(target[edge]))
        if ru == rv:
            continue
        reason = None
        if forbidden.get(ru, set()) & members.get(rv, set()):
            reason = "never_merge"
        elif size[ru] + size[rv] > max_size:
            reason = "cluster_size"
        elif n_types and (type_counts(ru) + type_counts(rv) > max_values).any():
            reason = "values_per_type"
        if reason:
            cut.append(edge)
            reasons.append(reason)
            continue
        parent[rv] = ru
        size[ru] += size[rv]
        if n_types:
            counts[ru] = type_counts(ru) + type_counts(rv)
        if rv in forbidden:
            forbidden.setdefault(ru, set()).update(forbidden.pop(rv))
        if rv in members:
            members.setdefault(ru, set()).update(members.pop(rv))

    bad_nodes = np.flatnonzero(bad[labels])
    roots = np.array([find(int(x)) for x in bad_nodes], dtype=np.int64)
    relabelled = labels.copy()
    relabelled[bad_nodes] = labels.max() + 1 + roots
    _, dense = np.unique(relabelled, return_inverse=True)
    return ClusteringResult(dense.astype(np.int64), np.asarray(cut, dtype=np.int64), reasons)
