-- Every identity-graph edge the guards cut in this run, and why: `cluster_size` (the person
-- would hold more CRM records and web devices than the limit), `values_per_type` (more distinct
-- values of one identifier type than the limit), `never_merge` (a manual override).
with

cuts as (

    select * from {{ ref('int_identity_edges_cut') }}

),

nodes as (

    select * from {{ ref('int_identity_nodes_resolved') }}

),

final as (

    select
        cuts.source_node,
        cuts.target_node,
        cuts.edge_type,
        cuts.weight,
        cuts.match_probability,
        cuts.evidence,
        cuts.cut_reason,
        source_nodes.person_id as source_person_id,
        target_nodes.person_id as target_person_id,
        {{ as_of_date() }} as as_of
    from cuts
    left join nodes as source_nodes
        on cuts.source_node = source_nodes.node_id
    left join nodes as target_nodes
        on cuts.target_node = target_nodes.node_id

)

select * from final
