"""Identity graph clustering under the guards: connected components whose oversized or
never-merge components are rebuilt strongest edge first (`constrained_components`, called by the
dbt model `int_identity_edges_cut`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
