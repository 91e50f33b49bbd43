"""ml.matching (normalisation, guards' clustering, overrides, stored model) and ml.identity_eval
on hand-made inputs."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pytest

from ml import identity_eval, matching

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
    for rule in matching.PREDICTION_BLOCKING_RULES:
        # every rule pins a selective key: postcode, birth date or a contact value
        assert any(key in rule for key in ("postcode", "dob", "email", "phone"))
    columns = [c["output_column_name"] for c in matching.comparisons()]
    assert tuple(columns) == matching.COMPARISON_COLUMNS


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


def test_levels_em_left_untrained_get_their_starting_values():
    from ml.matching import _fill_untrained_levels, settings_dict

    model = settings_dict()
    first = model["comparisons"][0]["comparison_levels"]
    first[1]["m_probability"] = "level not observed"
    first[2].pop("u_probability")
    assert _fill_untrained_levels(model) == 2
    start = settings_dict()["comparisons"][0]["comparison_levels"]
    assert first[1]["m_probability"] == start[1]["m_probability"]
    assert first[2]["u_probability"] == start[2]["u_probability"]
    assert _fill_untrained_levels(model) == 0
