-- Which person(s) each identity node speaks for, for consent and privacy requests: every graph
-- node, plus the identifiers a record carries that the guards kept out of the graph (a shared
-- family email speaks for each person who carries it).
with

nodes as (

    select * from {{ ref('int_identity_nodes_resolved') }}

),

links as (

    select * from {{ ref('int_identity_links_collected') }}

),

graph_subjects as (

    select nodes.node_id as subject_node, nodes.person_id
    from nodes

),

guarded_subjects as (

    select distinct
        links.identifier_node as subject_node,
        nodes.person_id
    from links
    inner join nodes
        on links.record_node = nodes.node_id
    where not links.is_linking

),

final as (

    -- disjoint: an identifier the guards keep out is never a graph node
    select * from graph_subjects
    union all
    select * from guarded_subjects

)

select * from final
