-- Every edge of the identity graph with a weight (log2 odds, like Splink's match weight): record
-- -> identifier links, probabilistic record <-> record matches, and always-merge overrides.
-- Clustering keeps the strongest edges when it must cut. Each end carries its node index (null
-- when it is no graph node), read by the graph steps as integers.
with

links as (

    select * from {{ ref('int_identity_links_collected') }}

),

records as (

    select * from {{ ref('int_identity_records_collected') }}

),

match_edges as (

    select * from {{ source('identity', 'identity_match_edges') }}

),

overrides as (

    select * from {{ ref('int_identity_overrides_resolved') }}

),

nodes as (

    select * from {{ ref('int_identity_nodes_indexed') }}

),

identifier_edges as (

    select
        links.record_node as source_node,
        links.identifier_node as target_node,
        'identifier:' || links.identifier_type as edge_type,
        {{ identity_identifier_weight('links.identifier_type') }} as weight,
        cast(null as double) as match_probability,
        cast(null as varchar) as evidence
    from links
    where links.is_linking

),

probabilistic_edges as (

    -- both records must still exist (the edges were scored on the same staging table)
    select
        match_edges.left_record_node as source_node,
        match_edges.right_record_node as target_node,
        'match' as edge_type,
        match_edges.match_weight as weight,
        match_edges.match_probability,
        match_edges.evidence
    from match_edges
    inner join records as left_records
        on match_edges.left_record_node = left_records.record_node
    inner join records as right_records
        on match_edges.right_record_node = right_records.record_node
    where not match_edges.is_conflict

),

override_edges as (

    select
        overrides.left_record_node as source_node,
        overrides.right_record_node as target_node,
        'always_merge' as edge_type,
        {{ identity_override_weight() }} as weight,
        cast(null as double) as match_probability,
        overrides.reason as evidence
    from overrides
    where overrides.action = 'always_merge' and overrides.is_applicable

),

all_edges as (

    select * from identifier_edges
    union all
    select * from probabilistic_edges
    union all
    select * from override_edges

),

final as (

    select
        all_edges.*,
        source_nodes.node_index as source_index,
        target_nodes.node_index as target_index
    from all_edges
    left join nodes as source_nodes
        on all_edges.source_node = source_nodes.node_id
    left join nodes as target_nodes
        on all_edges.target_node = target_nodes.node_id

)

select * from final
