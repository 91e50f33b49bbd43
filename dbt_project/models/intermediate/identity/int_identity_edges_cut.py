"""Edges the guards cut: components over the size limit, over the per-type value limit, or
holding a never-merge pair are rebuilt strongest edge first (ml.matching.constrained_components).

The engine-specific graph step (with int_identity_components): scipy over integer-coded nodes.
Only integers and weights cross into Python (the edges carry their node indexes); the cut edges'
details are joined back in DuckDB.
"""

import numpy as np
import pyarrow as pa

from ml.matching import constrained_components

IDENTIFIER_TYPES = ["email", "phone", "card", "user", "pay"]
COUNTED_RECORDS = ("crm", "web")  # POS transactions are many per person: not a size signal


def _node_arrays(nodes):
    """Type code (index in IDENTIFIER_TYPES, -1 for records) and size (1 for a counted record)
    of every node, placed by node index: no sort, no strings in Python."""
    type_code = " ".join(f"when '{name}' then {code}" for code, name in enumerate(IDENTIFIER_TYPES))
    counted = ", ".join(f"'{name}'" for name in COUNTED_RECORDS)
    arrays = nodes.select(
        f"node_index, cast(case node_type {type_code} else -1 end as tinyint) as type_code, "
        f"cast(node_type in ({counted}) as tinyint) as counted"
    ).fetchnumpy()
    index = np.asarray(arrays["node_index"], dtype=np.int64)
    n_nodes = len(index)
    node_type = np.full(n_nodes, -1, dtype=np.int64)
    node_size = np.zeros(n_nodes, dtype=np.int64)
    node_type[index] = np.asarray(arrays["type_code"], dtype=np.int64)
    node_size[index] = np.asarray(arrays["counted"], dtype=np.int64)
    return n_nodes, node_type, node_size


def model(dbt, session):
    dbt.config(materialized="table")
    nodes = dbt.ref("int_identity_nodes_indexed")
    edges = dbt.ref("int_identity_edges_weighted")
    overrides = dbt.ref("int_identity_overrides_resolved")
    parameters = dict(dbt.source("identity", "identity_parameters").fetchall())

    n_nodes, node_type, node_size = _node_arrays(nodes)

    # strongest first, then by node: node indexes are numbered in node id order, so this is the
    # order of (weight desc, source_node, target_node)
    graph_edges = edges.filter("source_index is not null and target_index is not null")
    arrays = (
        graph_edges.order("weight desc, source_index, target_index")
        .select("source_index, target_index, weight")
        .fetchnumpy()
    )
    left = nodes.set_alias("left_nodes")
    right = nodes.set_alias("right_nodes")
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
    columns = "source_node, target_node, edge_type, weight, match_probability, evidence"
    cut = np.asarray(result.cut_edges, dtype=np.int64)
    if len(cut) == 0:
        return (
            graph_edges.select(f"{columns}, cast(null as varchar) as cut_reason")
            .limit(0)
            .to_arrow_table()
        )
    # Edges equal in (weight, source, target) sit side by side in the order and meet the same
    # components, so they are cut together: the cut (source, target, weight) keys name them.
    keys = pa.table(
        {
            "source_index": pa.array(arrays["source_index"][cut]),
            "target_index": pa.array(arrays["target_index"][cut]),
            "weight": pa.array(arrays["weight"][cut]),
            "cut_reason": pa.array(result.cut_reasons, pa.string()),
        }
    )
    cut_keys = session.from_arrow(keys).distinct().set_alias("cut_keys")
    return (
        graph_edges.set_alias("edges")
        .join(
            cut_keys,
            "edges.source_index = cut_keys.source_index "
            "and edges.target_index = cut_keys.target_index and edges.weight = cut_keys.weight",
        )
        .select(
            "edges.source_node, edges.target_node, edges.edge_type, edges.weight, "
            "edges.match_probability, edges.evidence, cut_keys.cut_reason"
        )
        .to_arrow_table()
    )
