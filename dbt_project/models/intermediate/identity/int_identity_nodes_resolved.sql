-- Every graph node with its person: one person per connected component.
with

nodes as (

    select * from {{ ref('int_identity_nodes_indexed') }}

),

components as (

    select * from {{ ref('int_identity_components') }}

),

component_nodes as (

    select
        nodes.node_id,
        nodes.node_type,
        nodes.is_record,
        components.component_index
    from nodes
    inner join components
        on nodes.node_index = components.node_index

),

component_anchors as (

    -- the smallest record node names the component (every component holds a record)
    select
        component_nodes.component_index,
        'p_' || left({{ dbt.hash('min(component_nodes.node_id)') }}, 16) as person_id
    from component_nodes
    where component_nodes.is_record
    group by component_nodes.component_index

),

final as (

    select
        component_nodes.node_id,
        component_nodes.node_type,
        component_nodes.is_record,
        component_anchors.person_id
    from component_nodes
    inner join component_anchors
        on component_nodes.component_index = component_anchors.component_index

)

select * from final
