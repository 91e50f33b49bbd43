"""Edges the guards cut: components over the size limit, over the per-type value limit, or
holding a never-merge pair are rebuilt strongest edge first (ml.matching.constrained_components).

The engine-specific graph step (with int_identity_components): scipy over integer-coded nodes.
"""

import numpy as np
import pyarrow as pa

from ml.matching import constrained_components

IDENTIFIER_TYPES = ["email", "phone", "card", "user", "pay"]
COUNTED_RECORDS = ("crm", "web")  # POS transactions are many per person: not a size signal


def model(dbt, session):
    dbt.config(materialized="table")
    nodes = dbt.ref("int_identity_nodes_indexed")
    edges = dbt.ref("int_identity_edges_weighted")
    overrides = dbt.ref("int_identity_overrides_resolved")
    parameters = dict(dbt.source("identity", "identity_parameters").fetchall())

    node_arrays = nodes.order("node_index").select("node_type").fetchnumpy()
    node_types = np.asarray(node_arrays["node_type"], dtype=object)
    n_nodes = len(node_types)
    type_code = {t: i for i, t in enumerate(IDENTIFIER_TYPES)}
    node_type = np.full(n_nodes, -1, dtype=np.int64)
    for name, code in type_code.items():
        node_type[node_types == name] = code
    node_size = np.isin(node_types, COUNTED_RECORDS).astype(np.int64)

    left = nodes.set_alias("left_nodes")
    right = nodes.set_alias("right_nodes")
    indexed = (
        edges.set_alias("edges")
        .join(left, "edges.source_node = left_nodes.node_id")
        .join(right, "edges.target_node = right_nodes.node_id")
        .select(
            "left_nodes.node_index as source_index, right_nodes.node_index as target_index, "
            "edges.weight, edges.source_node, edges.target_node, edges.edge_type, "
            "edges.match_probability, edges.evidence"
        )
        .order("weight desc, source_node, target_node")
    )
    arrays = indexed.select("source_index, target_index, weight").fetchnumpy()
    never = (
        overrides.filter("action = 'never_merge' and is_applicable")
        .set_alias("o")
        .join(left, "o.left_record_node = left_nodes.node_id")
        .join(right, "o.right_record_node = right_nodes.node_id")
        .select("left_nodes.node_index, right_nodes.node_index")
        .fetchall()
    )
    result = constrained_components(
        n_nodes,
        arrays["source_index"],
        arrays["target_index"],
        arrays["weight"],
        node_size=node_size,
        node_type=node_type,
        max_size=int(parameters.get("max_cluster_size", 50)),
        max_values=int(parameters.get("max_values_per_type", 5)),
        never_pairs=[(int(a), int(b)) for a, b in never],
    )
    cut = result.cut_edges
    if len(cut) == 0:
        return pa.table(
            {
                "source_node": pa.array([], pa.string()),
                "target_node": pa.array([], pa.string()),
                "edge_type": pa.array([], pa.string()),
                "weight": pa.array([], pa.float64()),
                "match_probability": pa.array([], pa.float64()),
                "evidence": pa.array([], pa.string()),
                "cut_reason": pa.array([], pa.string()),
            }
        )
    detail = indexed.select(
        "source_node, target_node, edge_type, weight, match_probability, evidence"
    ).fetch_arrow_table()
    picked = detail.take(pa.array(cut))
    return picked.append_column("cut_reason", pa.array(result.cut_reasons, pa.string()))
