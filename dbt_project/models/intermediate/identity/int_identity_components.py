"""Connected components of the identity graph after the guards' cuts (scipy csgraph on
integer-coded nodes). A recursive CTE is too slow at millions of edges."""

import numpy as np
import pyarrow as pa
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def model(dbt, session):
    dbt.config(materialized="table")
    nodes = dbt.ref("int_identity_nodes_indexed")
    edges = dbt.ref("int_identity_edges_weighted")
    cuts = dbt.ref("int_identity_edges_cut")

    # the edges carry their node indexes (null when an end is no graph node)
    kept = (
        edges.filter("source_index is not null and target_index is not null")
        .set_alias("edges")
        .join(
            cuts.set_alias("cuts"),
            "edges.source_node = cuts.source_node and edges.target_node = cuts.target_node "
            "and edges.edge_type = cuts.edge_type",
            how="anti",
        )
        .select("edges.source_index, edges.target_index")
    )
    arrays = kept.fetchnumpy()
    source = np.asarray(arrays["source_index"], dtype=np.int32)
    target = np.asarray(arrays["target_index"], dtype=np.int32)
    n_nodes = int(nodes.aggregate("count(*) as n").fetchall()[0][0])

    graph = coo_matrix(
        (np.ones(len(source), dtype=np.int8), (source, target)), shape=(n_nodes, n_nodes)
    ).tocsr()
    _, labels = connected_components(graph, directed=False)

    return pa.table(
        {
            "node_index": pa.array(np.arange(n_nodes, dtype=np.int32)),
            "component_index": pa.array(labels.astype(np.int32)),
        }
    )
