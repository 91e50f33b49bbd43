"""ml.matching (normalisation, guards' clustering, overrides, stored model) and ml.identity_eval
on hand-made inputs."""

from __future__ import annotations

import json
import math
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pytest

from ml import identity_eval, matching
from ml.matching import em_floor
from ml.matching import model as matching_model

STAGING_COLUMNS = (
    "record_node varchar, first_name varchar, last_name varchar, date_of_birth date, "
    "street_address varchar, postcode varchar, city varchar, state varchar, email varchar, "
    "phone_e164 varchar, source_system varchar, crm_customer_id varchar"
)


@pytest.fixture
def con():
    connection = duckdb.connect()
    connection.execute("create schema staging")
    connection.execute(f"create table staging.stg_crm__customers ({STAGING_COLUMNS})")
    yield connection
    connection.close()


def _records(con, rows):
    con.executemany(
        "insert into staging.stg_crm__customers values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(*row, "crm", row[0].rsplit(":", 1)[-1]) for row in rows],
    )


def test_normalisation_of_names_addresses_and_nicknames(con):
    _records(
        con,
        [
            ("crm:crm:1", " Bob ", "O'Neil-Smith", date(1980, 3, 4), "12 Oak Street",
             "ab1 2cd", "New York", "NY", "bob@x.com", "+12125550123"),
            ("crm:crm:2", "ROBERT", "Ó Neil", None, "12  oak st.", None, None, None, None, None),
            ("crm:crm:3", "Sam", "Lee", None, None, None, None, None, None, None),
        ],
    )  # fmt: skip
    assert matching.prepare_input(con) == 3
    rows = con.execute(
        "select record_node, first_name, last_name, first_key, first_names, street_address, "
        "house_number, postcode, city, email_user, dob_text "
        f"from {matching.SCRATCH_SCHEMA}.match_input order by record_node"
    ).fetchall()
    bob, robert, sam = rows
    assert bob[1:4] == ("bob", "oneilsmith", "robert")
    assert sorted(bob[4]) == ["bob", "robert"]
    assert bob[5:11] == ("12 oak st", "12", "AB12CD", "newyork", "bob", "1980-03-04")
    assert robert[1:4] == ("robert", "oneil", "robert")
    assert robert[5] == "12 oak st"  # abbreviation and punctuation normalised alike
    assert sam[3] == "samantha" and sorted(sam[4]) == ["sam", "samantha", "samuel"]


def test_settings_hash_is_stable_and_blocking_rules_are_tractable():
    assert matching.settings_hash() == matching.settings_hash()
    columns = [c["output_column_name"] for c in matching.comparisons()]
    assert tuple(columns) == matching.COMPARISON_COLUMNS


def test_blocking_rules_are_chosen_by_their_counted_comparisons(monkeypatch):
    con = duckdb.connect()
    # 40 records: all share one last name and city, birth dates in pairs, two swapped names
    con.execute(
        "create table t as select 'n' || i as record_node, 'smith' as last_name, "
        "'f' || (i % 20) as first_key, 'f' || (i % 20) as first_name, "
        "'x' || (i % 20) as first_initial, date '1980-01-01' + (i // 2)::int as dob, "
        "'springfield' as city, null::varchar as postcode, null::varchar as street_address, "
        "null::varchar as email, null::varchar as phone from range(40) as r(i)"
    )
    con.execute("update t set first_name = 'smith', last_name = 'f1' where record_node = 'n0'")
    for keys in matching.PREDICTION_BLOCKING_CANDIDATES:
        rule = matching.blocking_rule_sql(keys)
        brute = con.execute(
            f"select count(*) from t as l, t as r where l.record_node < r.record_node and {rule}"
        ).fetchall()[0][0]
        counted = matching.rule_comparisons(con, "t", keys)
        # ordered pairs halved: exact for same-column keys, an estimate for swapped names
        assert abs(counted - brute) <= 1, (rule, counted, brute)
    monkeypatch.setattr(matching_model, "MIN_COMPARISONS", 0)
    monkeypatch.setattr(matching_model, "COMPARISONS_PER_RECORD", 10)
    chosen, report = matching.choose_blocking_rules(con, "t", 40)
    by_rule = {row["rule"]: row for row in report}
    assert "l.dob = r.dob" in chosen  # 20 pairs
    assert "l.last_name = r.last_name" not in chosen  # ~741 pairs: one block
    assert "l.city = r.city" not in chosen
    assert sum(by_rule[r]["comparisons"] for r in chosen) <= 10 * 40
    assert [r["rule"] for r in report] == list(matching.PREDICTION_BLOCKING_RULES)


def _cluster(edges, n_nodes, *, size=None, types=None, max_size=10, max_values=5, never=()):
    source, target, weight = (np.array(x) for x in zip(*edges, strict=True))
    return matching.constrained_components(
        n_nodes, source, target, weight,
        node_size=np.ones(n_nodes, dtype=int) if size is None else np.array(size),
        node_type=np.full(n_nodes, -1) if types is None else np.array(types),
        max_size=max_size, max_values=max_values, never_pairs=list(never),
    )  # fmt: skip


def test_components_without_violations_are_plain_connected_components():
    result = _cluster([(0, 1, 5.0), (2, 3, 1.0)], 5)
    labels = result.labels
    assert labels[0] == labels[1] and labels[2] == labels[3]
    assert len(set(labels.tolist())) == 3
    assert len(result.cut_edges) == 0


def test_cluster_size_guard_cuts_the_weakest_edge():
    # chain 0-1-2-3-4 whose weakest link is 2-3
    edges = [(0, 1, 30.0), (1, 2, 29.0), (2, 3, 5.0), (3, 4, 28.0)]
    result = _cluster(edges, 5, max_size=3)
    labels = result.labels.tolist()
    assert labels[0] == labels[1] == labels[2] and labels[3] == labels[4]
    assert labels[2] != labels[3]
    assert result.cut_edges.tolist() == [2] and result.cut_reasons == ["cluster_size"]


def test_values_per_type_guard_keeps_identifiers_of_one_type_apart():
    # records 0 and 1 with emails 2 and 3, and a weak record-record edge joining them
    types = [-1, -1, 0, 0]
    edges = [(0, 2, 22.0), (1, 3, 22.0), (0, 1, 6.0)]
    result = _cluster(edges, 4, types=types, max_values=1)
    assert result.labels[0] != result.labels[1]
    assert result.cut_edges.tolist() == [2] and result.cut_reasons == ["values_per_type"]


def test_never_merge_cuts_the_weakest_edge_on_the_path():
    # 0 and 3 must not meet: 0-1 (strong), 1-2 (weak), 2-3 (strong), plus an unrelated 4-5
    edges = [(0, 1, 20.0), (1, 2, 3.0), (2, 3, 20.0), (4, 5, 1.0)]
    result = _cluster(edges, 6, never=[(0, 3)])
    labels = result.labels.tolist()
    assert labels[0] == labels[1] and labels[2] == labels[3] and labels[1] != labels[2]
    assert labels[4] == labels[5]
    assert result.cut_reasons == ["never_merge"] and result.cut_edges.tolist() == [1]


def test_overrides_file_is_validated(tmp_path: Path):
    con = duckdb.connect()
    assert matching.write_overrides(con, tmp_path / "missing.csv") == 0
    good = tmp_path / "good.csv"
    good.write_text(
        "left_source_system,left_source_key,right_source_system,right_source_key,action,reason\n"
        "crm,1,pos,T9,Always_Merge,told by phone\n"
    )
    assert matching.write_overrides(con, good) == 1
    row = con.execute("select action, right_source_key from intermediate.identity_overrides")
    assert row.fetchall() == [("always_merge", "T9")]
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "left_source_system,left_source_key,right_source_system,right_source_key,action\n"
        "crm,1,crm,2,merge_maybe\n"
    )
    with pytest.raises(ValueError, match="line 2: action 'merge_maybe'"):
        matching.write_overrides(con, bad)
    blank_column = tmp_path / "short.csv"
    blank_column.write_text("left_source_system,left_source_key,action\ncrm,1,never_merge\n")
    with pytest.raises(ValueError, match="missing column"):
        matching.write_overrides(con, blank_column)


def test_stored_model_is_found_by_settings_hash():
    con = duckdb.connect()
    model = {"comparisons": [], "link_type": "dedupe_only"}
    matching.append_model_run(
        con, matching.MODEL_NAME, "v1", date(2026, 6, 30), model,
        {"settings_hash": "abc"}, ["first_name"],
    )  # fmt: skip
    assert matching.load_stored_model(con, "abc") == ("v1", model)
    assert matching.load_stored_model(con, "other") is None


def test_pairwise_and_cluster_metrics_on_hand_made_clusters():
    con = duckdb.connect()
    con.execute("create table truth (source_system varchar, source_key varchar, "
                "true_person_id varchar)")  # fmt: skip
    con.execute("create table predicted (source_system varchar, source_key varchar, "
                "person_id varchar)")  # fmt: skip
    # truth: A = {1, 2, 3}, B = {4, 5}, C = {6}; predicted: {1, 2}, {3, 4, 5}, 6 unresolved
    truth = [("1", "A"), ("2", "A"), ("3", "A"), ("4", "B"), ("5", "B"), ("6", "C")]
    predicted = [("1", "x"), ("2", "x"), ("3", "y"), ("4", "y"), ("5", "y"), ("6", None)]
    con.executemany("insert into truth values ('crm', ?, ?)", truth)
    con.executemany("insert into predicted values ('crm', ?, ?)", predicted)
    metrics = identity_eval.evaluate(con, "predicted", "truth", "crm")
    # true pairs 3 + 1 = 4; predicted pairs 1 + 3 = 4; shared: (1,2) and (4,5)
    assert (metrics["true_pairs"], metrics["predicted_pairs"]) == (4, 4)
    assert metrics["true_positive_pairs"] == 2
    assert metrics["pairwise_precision"] == 0.5 and metrics["pairwise_recall"] == 0.5
    assert metrics["pairwise_f1"] == 0.5
    assert metrics["persons_exactly_recovered"] == 1  # only C
    assert (metrics["true_persons_split"], metrics["predicted_persons_merged"]) == (1, 1)


def test_evaluation_without_ground_truth_records_nothing(tmp_path: Path):
    con = duckdb.connect()
    outcome = identity_eval.evaluate_identity_map(con, tmp_path / "none.csv", date(2026, 6, 30))
    assert outcome == {"truth_present": False, "note": "no ground truth", "scopes": {}}
    assert identity_eval.latest_evaluation(con) is None


FIRST_NAMES = ("anna", "ben", "carl", "dora", "emil", "fay", "gus", "hana", "ivan", "jill", "kurt")
LAST_NAMES = ("abbot", "baker", "cole", "dunn", "eady", "frost", "grant", "hale", "ivers", "jones")
STREETS = ("oak st", "elm ave", "pine rd", "main st", "hill ln", "lake dr")


def _person(i: int, first=None, last=None, dob=None) -> tuple:
    return (
        first or FIRST_NAMES[i % 11], last or LAST_NAMES[(i // 11) % 10],
        dob or date(1950, 1, 1) + timedelta(days=37 * i), f"{i + 1} {STREETS[i % 6]}",
        f"P{i % 8}", f"city{i % 8}", f"s{i % 4}", f"u{i}@example.com", f"+1212555{i:04d}",
    )  # fmt: skip


def _underflow_records(con, persons: int = 100, namesakes: int = 2) -> None:
    """Records on which Splink 5.0.0's EM drives m to 0: `persons` people with two identical
    records each, plus `namesakes` pairs of two people who share first name, last name and birth
    date and nothing else. In the sessions blocked on birth date, those pairs alone take the low
    levels of street (else), locality (same city), email and phone (fuzzy); EM calls them
    non-matches, and those four m's shrink together, reaching 0.0 in the third session."""
    people = [_person(i) for i in range(persons) for _ in range(2)]
    people += [_person(persons + 1000 + j, *people[2 * j][:3]) for j in range(namesakes)]
    _records(con, [(f"crm:crm:{n}", *person) for n, person in enumerate(people)])


def _em_without_floor(con) -> None:
    """Train as train_model does, without the floor (Splink 5.0.0 as shipped)."""
    linker = matching_model._linker(con, matching.settings_dict(), matching.SCRATCH_SCHEMA)
    linker.training.estimate_probability_two_random_records_match(
        list(matching.PRIOR_RULES), recall=matching.PRIOR_RULES_RECALL
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=5e6, seed=42)
    for rule in matching.TRAINING_BLOCKING_RULES:
        linker.training.estimate_parameters_using_expectation_maximisation(
            rule, estimate_without_term_frequencies=True, max_pairs=2e6
        )


def test_the_crafted_records_still_make_splink_em_underflow(con):
    # The regression test below is only meaningful while Splink's own EM fails on these
    # records. If this fails after a Splink upgrade, Splink bounds EM itself: drop the workaround.
    _underflow_records(con)
    matching.prepare_input(con)
    with pytest.raises(ValueError, match="below the minimum allowed"):
        _em_without_floor(con)


def test_em_training_completes_where_splink_underflows(con):
    _underflow_records(con)
    matching.prepare_input(con)
    model, metrics = matching.train_model(con, seed=42)
    sessions = metrics["em_sessions"]
    assert [s["blocking_rule"] for s in sessions] == list(matching.TRAINING_BLOCKING_RULES)
    assert all("status" not in s and s["iterations"] >= 1 for s in sessions)  # none skipped
    # the levels only the namesake pairs take sit at the floor instead of at 0
    assert "street_address: else" in sessions[2]["levels_at_floor"]
    for comparison in model["comparisons"]:
        for level in comparison["comparison_levels"]:
            if level.get("is_null_level"):
                continue
            for key in ("m_probability", "u_probability"):
                value = level[key]
                assert isinstance(value, float) and math.isfinite(value), (level, key)
                assert em_floor._EM_FLOOR <= value <= 1.0, (comparison["output_column_name"], level)


def test_floor_raises_small_shares_and_keeps_each_comparison_a_distribution():
    records = [
        {"output_column_name": "dob", "comparison_vector_value": 2, "m_probability": 0.999,
         "u_probability": 0.2},
        {"output_column_name": "dob", "comparison_vector_value": 1, "m_probability": 1e-200,
         "u_probability": 0.3},
        {"output_column_name": "dob", "comparison_vector_value": 0, "m_probability": 0.0,
         "u_probability": 0.5},
        {"output_column_name": "_probability_two_random_records_match",
         "comparison_vector_value": 0, "m_probability": 1e-9, "u_probability": 1.0},
    ]  # fmt: skip
    assert em_floor._floor_proportions(records) == [("dob", 0, "m"), ("dob", 1, "m")]
    m = [r["m_probability"] for r in records[:3]]
    assert m[1] == m[2] == em_floor._EM_FLOOR
    assert m[0] == pytest.approx(0.999 - 2 * em_floor._EM_FLOOR, abs=1e-15)
    assert [r["u_probability"] for r in records[:3]] == [0.2, 0.3, 0.5]
    assert records[3]["m_probability"] == 1e-9  # the session's lambda is not a share


def test_em_floor_patches_only_inside_and_refuses_a_changed_splink(monkeypatch):
    from splink.internals import expectation_maximisation as em

    shipped = em.compute_proportions_for_new_parameters
    with em_floor._em_probability_floor():
        assert em.compute_proportions_for_new_parameters is not shipped
        with pytest.raises(RuntimeError, match="revisit"), em_floor._em_probability_floor():
            pass  # nested: would floor twice
    assert em.compute_proportions_for_new_parameters is shipped
    monkeypatch.setattr(em, "compute_proportions_for_new_parameters", lambda params, extra: [])
    with pytest.raises(RuntimeError, match="revisit"), em_floor._em_probability_floor():
        pass
    monkeypatch.delattr(em, "compute_proportions_for_new_parameters")
    with pytest.raises(RuntimeError, match="revisit"), em_floor._em_probability_floor():
        pass


def test_term_frequency_levels_use_normalised_match_input_columns(con):
    _records(con, [("crm:crm:1", "Ann", "Lee", None, None, "ab1", None, None, None, None)])
    matching.prepare_input(con)
    columns = {
        row[0]
        for row in con.execute(
            "select column_name from information_schema.columns where table_schema = ? "
            "and table_name = 'match_input'",
            [matching.SCRATCH_SCHEMA],
        ).fetchall()
    }
    tf = {}
    for comparison in matching.comparisons():
        for level in comparison["comparison_levels"]:
            if "tf_adjustment_column" in level:
                tf[comparison["output_column_name"], level["label_for_charts"]] = level
                assert level["tf_adjustment_column"] in columns
                # an exact-match level on that very column (Splink takes its u as the base)
                column = level["tf_adjustment_column"]
                assert level["sql_condition"] == f"{column}_l = {column}_r"
                assert 0 < level["tf_minimum_u_value"] < 0.01
    assert set(tf) == {("first_name", "exact"), ("last_name", "exact"),
                       ("locality", "same postcode")}  # fmt: skip


def test_edges_keep_their_schema_and_weights_include_term_frequencies(con):
    _underflow_records(con)
    result = matching.match_records(con, threshold=0.5)
    assert result.trained and result.edges >= 100
    assert all("status" not in session for session in result.training["em_sessions"])
    described = con.execute(f"describe {matching.EDGES_TABLE}").fetchall()
    assert [row[0] for row in described] == [
        "left_record_node", "right_record_node", "match_probability", "match_weight",
        *(f"mw_{c}" for c in matching.COMPARISON_COLUMNS),
        "evidence", "agreeing_fields", "blocking_rule", "is_conflict", "model_version",
    ]  # fmt: skip
    model = matching.load_stored_model(con, matching.settings_hash())[1]
    prior = model["probability_two_random_records_match"]
    weights = " + ".join(f"coalesce(mw_{c}, 0)" for c in matching.COMPARISON_COLUMNS)
    rows = con.execute(
        f"select match_weight, {weights}, json_extract_string(evidence, '$.last_name') "
        f"from {matching.EDGES_TABLE}"
    ).fetchall()
    for match_weight, summed, last_name_level in rows:
        # per-comparison weights (with their term-frequency adjustments) add up to the total
        assert match_weight == pytest.approx(summed + math.log2(prior / (1 - prior)), abs=1e-6)
        assert last_name_level in ("exact", "null", "else", "jaro-winkler >= 0.9")
    # names of different frequency: the same exact level scores differently per value
    assert len({round(row[1], 6) for row in rows}) > 1


def test_settings_hash_covers_term_frequencies_and_the_em_floor(monkeypatch):
    current = matching.settings_hash()
    monkeypatch.setitem(matching.TERM_FREQUENCY_MINIMUM_U, "last_name", 1e-3)
    assert matching.settings_hash() != current  # a stored model is retrained
    monkeypatch.undo()
    monkeypatch.setattr(em_floor, "_EM_FLOOR", 1e-7)
    assert matching.settings_hash() != current


def _model_run_rows(con) -> list[dict]:
    rows = con.execute(
        "select version, metrics from ml.model_runs where model_name = ? order by trained_at",
        [matching.MODEL_NAME],
    ).fetchall()
    return [{"version": v, **json.loads(m)} for v, m in rows]


def _distinct_people(n: int, duplicated: int = 0) -> list[tuple]:
    """`n` records of different people, the first `duplicated` of them twice (same values)."""
    people = [_person(i) for i in range(n - duplicated)]
    people += people[:duplicated]
    return [(f"crm:crm:{k}", *p) for k, p in enumerate(people)]


@pytest.mark.parametrize("n_records", [3, 20, 50])
def test_too_little_data_to_train_falls_back_to_starting_parameters_and_says_so(con, n_records):
    # 50 different people: no EM session has a pair (Splink raises EMTrainingException)
    _records(con, _distinct_people(n_records, duplicated=1))
    result = matching.match_records(con, as_of=date(2026, 6, 30))
    assert result.status == "fallback" and not result.trained
    assert result.model_version.endswith(".untrained")
    assert any("starting parameters" in w for w in result.warnings), result.warnings
    # the one duplicate is still found with the starting parameters
    edges = con.execute(
        f"select left_record_node, right_record_node from {matching.EDGES_TABLE}"
    ).fetchall()
    assert edges == [("crm:crm:0", f"crm:crm:{n_records - 1}")]
    (row,) = _model_run_rows(con)
    assert row["status"] == "fallback" and row["reason"] and row["records"] == n_records
    assert row["model_used"] == result.model_version
    # a re-run on the same data records nothing new
    matching.match_records(con, as_of=date(2026, 6, 30))
    assert len(_model_run_rows(con)) == 1


def test_too_little_data_falls_back_to_the_last_trained_model(con):
    _underflow_records(con)
    trained = matching.match_records(con, as_of=date(2026, 6, 1))
    assert trained.trained and trained.status == "trained"
    con.execute("delete from staging.stg_crm__customers")
    _records(con, _distinct_people(20, duplicated=2))
    result = matching.match_records(con, retrain=True, as_of=date(2026, 6, 2))
    assert result.status == "fallback" and result.model_version == trained.model_version
    assert any(trained.model_version in w for w in result.warnings), result.warnings
    assert result.edges == 2
    statuses = [(r["status"], r.get("model_used")) for r in _model_run_rows(con)]
    assert statuses == [("trained", None), ("fallback", trained.model_version)]
    # a fallback row is never taken for a trained model
    assert matching.load_stored_model(con, matching.settings_hash())[0] == trained.model_version


@pytest.mark.parametrize("n_records", [0, 1])
def test_fewer_than_two_records_skip_matching_with_a_recorded_reason(con, n_records):
    if n_records:
        _records(con, _distinct_people(n_records))
    result = matching.match_records(con, as_of=date(2026, 6, 30))
    assert result.status == "skipped" and result.edges == 0 and result.warnings
    assert con.execute(f"select count(*) from {matching.EDGES_TABLE}").fetchall()[0][0] == 0
    (row,) = _model_run_rows(con)
    assert row["status"] == "skipped" and "nothing to match" in row["reason"]


def test_two_records_of_one_person_are_matched_without_training(con):
    _records(con, _distinct_people(2, duplicated=1))
    result = matching.match_records(con)
    assert result.status == "fallback" and result.edges == 1


def test_no_crm_source_at_all_skips_matching_with_a_recorded_reason():
    con = duckdb.connect()
    result = matching.match_records(con)
    assert result.status == "skipped" and "does not exist" in result.reason
    assert con.execute(f"select count(*) from {matching.EDGES_TABLE}").fetchall()[0][0] == 0
    (row,) = _model_run_rows(con)
    assert row["status"] == "skipped"
