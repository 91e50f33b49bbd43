"""Splink alone, set up the standard way, as the yardstick for the pipeline's identity map.

Not our model: Splink's own comparison library on lightly standardised columns (trimmed,
lower-case), as its FEBRL tutorials do it:
- comparisons: first and last name (`NameComparison`: exact with term frequencies, Jaro-Winkler
  0.92/0.88/0.7), birth date (`DateOfBirthComparison`: exact, one edit, month, year, ten years),
  street address (exact with term frequencies, Levenshtein 1 and 2), suburb/city (exact with term
  frequencies, Jaro-Winkler 0.9/0.7), postcode (exact with term frequencies, Levenshtein 1),
  state (exact); email and phone too when the records carry them (exact, Levenshtein);
- prior from a deterministic rule (same names and birth date, recall 0.7), u by random sampling,
  m by two EM sessions (blocked on first and last name; on birth date), with the pipeline's guard
  against Splink 5.0.0's EM underflow (`ml.matching.em_floor._em_probability_floor`), without
  which the baseline fails outright on data with contact columns;
- predictions blocked on names, swapped names, birth date, street within postcode and postcode
  with first-name initial; clustered with Splink's connected components at the threshold.

A landing zone whose CRM records come from two systems that each hold one record per person
(FEBRL4) is linked with `link_only`, anything else deduplicated (`dedupe_only`).
"""

from __future__ import annotations

import time
from typing import Any

import duckdb

from ml.matching.em_floor import _em_probability_floor
from ml.matching.inputs import _check_identifier

SOURCE_TABLE = "staging.stg_crm__customers"
SCRATCH_SCHEMA = "splink_baseline_scratch"

PREDICTION_RULES = (
    ("first_name", "last_name"),
    "l.first_name = r.last_name and l.last_name = r.first_name",
    ("dob",),
    ("postcode", "street_address"),
    ("postcode", "first_initial"),
)
EM_RULES = (("first_name", "last_name"), ("dob",))
PRIOR_RULES = (("first_name", "last_name", "dob"),)
PRIOR_RECALL = 0.7


def _rule(rule):
    from splink import block_on

    return block_on(*rule) if isinstance(rule, tuple) else rule


def settings(link_type: str, with_contact: bool) -> Any:
    import splink.comparison_library as cl
    from splink import SettingsCreator

    comparisons = [
        cl.NameComparison("first_name").configure(term_frequency_adjustments=True),
        cl.NameComparison("last_name").configure(term_frequency_adjustments=True),
        cl.DateOfBirthComparison("dob", input_is_string=False),
        cl.LevenshteinAtThresholds("street_address", [1, 2]).configure(
            term_frequency_adjustments=True
        ),
        cl.JaroWinklerAtThresholds("city", [0.9, 0.7]).configure(term_frequency_adjustments=True),
        cl.LevenshteinAtThresholds("postcode", [1]).configure(term_frequency_adjustments=True),
        cl.ExactMatch("state"),
    ]
    if with_contact:
        comparisons += [cl.EmailComparison("email"), cl.LevenshteinAtThresholds("phone", [1, 2])]
    return SettingsCreator(
        link_type=link_type,
        unique_id_column_name="record_node",
        blocking_rules_to_generate_predictions=[_rule(r) for r in PREDICTION_RULES],
        comparisons=comparisons,
        retain_intermediate_calculation_columns=False,
        retain_matching_columns=False,
    )


def _standardised(source_table: str, where: str) -> str:
    return f"""
        select
            record_node,
            source_system,
            nullif(lower(trim(first_name)), '') as first_name,
            nullif(lower(trim(last_name)), '') as last_name,
            left(nullif(lower(trim(first_name)), ''), 1) as first_initial,
            date_of_birth as dob,
            nullif(lower(trim(street_address)), '') as street_address,
            nullif(lower(trim(city)), '') as city,
            nullif(upper(trim(postcode)), '') as postcode,
            nullif(lower(trim(state)), '') as state,
            email,
            phone_e164 as phone
        from {source_table}
        where {where}
    """


def splink_baseline_identity_map(
    con: duckdb.DuckDBPyConnection,
    output_table: str,
    *,
    threshold: float = 0.95,
    seed: int = 42,
    max_pairs_u: float = 5e6,
    link_type: str | None = None,
    source_table: str = SOURCE_TABLE,
) -> dict[str, Any]:
    """Write `output_table` (source_system, source_key, person_id) over the CRM records from Splink
    alone (see the module's doc); returns the link type used and timings."""
    from splink import DuckDBAPI, Linker

    _check_identifier(output_table)
    _check_identifier(source_table)
    t0 = time.perf_counter()
    systems = [
        r[0]
        for r in con.execute(
            f"select distinct source_system from {source_table} order by 1"
        ).fetchall()
    ]
    if link_type is None:
        one_each = con.execute(
            f"select count(*) = count(distinct crm_customer_id) from {source_table}"
        ).fetchall()[0][0]
        link_type = "link_only" if len(systems) == 2 and one_each else "dedupe_only"
    with_contact = bool(
        con.execute(f"select count(email) + count(phone_e164) > 0 from {source_table}").fetchall()[
            0
        ][0]
    )
    con.execute(f"create schema if not exists {SCRATCH_SCHEMA}")
    try:
        if link_type == "link_only":
            names = []
            for i, system in enumerate(systems):
                con.execute(
                    f"create or replace table {SCRATCH_SCHEMA}.input_{i} as "
                    + _standardised(source_table, "source_system = ?"),
                    [system],
                )
                names.append(f"input_{i}")
        else:
            con.execute(
                f"create or replace table {SCRATCH_SCHEMA}.input_0 as "
                + _standardised(source_table, "true")
            )
            names = ["input_0"]
        db_api = DuckDBAPI(connection=con, output_schema=SCRATCH_SCHEMA)
        frames = [db_api.register(name) for name in names]
        linker = Linker(frames, settings(link_type, with_contact), log_level=None)
        training = linker.training
        training.estimate_probability_two_random_records_match(
            [_rule(r) for r in PRIOR_RULES], recall=PRIOR_RECALL
        )
        training.estimate_u_using_random_sampling(max_pairs=max_pairs_u, seed=seed)
        for rule in EM_RULES:
            # Splink 5.0.0's EM underflows on some data (ml.matching's workaround, not a model
            # choice): without it the baseline fails instead of scoring
            with _em_probability_floor():
                training.estimate_parameters_using_expectation_maximisation(
                    _rule(rule), estimate_without_term_frequencies=True
                )
        t1 = time.perf_counter()
        predictions = linker.inference.predict(
            threshold_match_probability=threshold, warning_mode="never"
        )
        clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
            predictions, threshold_match_probability=threshold
        )
        con.execute(
            f"""
            create or replace table {output_table} as
            select
                source.source_system,
                source.crm_customer_id as source_key,
                'splink_' || clusters.cluster_id as person_id
            from {SCRATCH_SCHEMA}.{clusters.physical_name} as clusters
            inner join {source_table} as source
                on clusters.record_node = source.record_node
            """
        )
        return {
            "link_type": link_type,
            "timings_s": {
                "train": round(t1 - t0, 2),
                "predict_and_cluster": round(time.perf_counter() - t1, 2),
            },
        }
    finally:
        con.execute("set schema 'main'")
        con.execute(f"drop schema if exists {SCRATCH_SCHEMA} cascade")
