"""Connected components of the identity graph (scipy csgraph on integer-coded nodes).

A recursive CTE is too slow at millions of edges; this is the one engine-specific graph step.
"""

import numpy as np
import pyarrow as pa
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def model(dbt, session):
    dbt.config(materialized="table")
    nodes = dbt.ref("int_identity_nodes_indexed")
    links = dbt.ref("int_identity_links_collected")

    record_nodes = nodes.set_alias("record_nodes")
    identifier_nodes = nodes.set_alias("identifier_nodes")
    edges = (
        links.filter("is_linking")
        .set_alias("links")
        .join(record_nodes, "links.record_node = record_nodes.node_id")
        .join(identifier_nodes, "links.identifier_node = identifier_nodes.node_id")
        .select(
            "record_nodes.node_index as source_index, identifier_nodes.node_index as target_index"
        )
    )
    arrays = edges.fetchnumpy()
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
