-- Every graph node with its person: one person per connected component, with a stable id. A
-- component takes the id most of its records had in the previous run (ties: the oldest id); an
-- old id goes to the component holding most of its records; other components get a new id,
-- derived with the HMAC key from the component's smallest record node (macro
-- person_id_for_anchor). An old id issued by the former unkeyed rule is never kept: the component
-- holding it gets a keyed id instead (person_id_lineage records the change as a `rekey`).
-- The previous assignment is read from person_id_registry (incremental, written after this
-- model in the same build), looked up by name since a ref would be a cycle.
{%- set registry = adapter.get_relation(
    database=this.database, schema=this.schema, identifier='person_id_registry'
) if execute else none %}
with

nodes as (

    select * from {{ ref('int_identity_nodes_indexed') }}

),

components as (

    select * from {{ ref('int_identity_components') }}

),

previous_assignment as (

    {% if registry is not none -%}
    select record_node, person_id, first_assigned_on from {{ registry }}
    {%- else -%}
        select
            cast(null as varchar) as record_node,
            cast(null as varchar) as person_id,
            cast(null as date) as first_assigned_on
        where false
    {%- endif %}

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

    -- the smallest record node of each component (components without a record have no person)
    select
        component_nodes.component_index,
        min(component_nodes.node_id) as anchor_node
    from component_nodes
    where component_nodes.is_record
    group by component_nodes.component_index

),

votes as (

    select
        component_nodes.component_index,
        previous_assignment.person_id,
        count(*) as n_records,
        min(previous_assignment.first_assigned_on) as first_assigned_on
    from component_nodes
    inner join previous_assignment
        on component_nodes.node_id = previous_assignment.record_node
    group by component_nodes.component_index, previous_assignment.person_id

),

id_holders as (

    -- each old id goes to the component holding most of its records
    select votes.*
    from votes
    inner join component_anchors
        on votes.component_index = component_anchors.component_index
    qualify row_number() over (
        partition by votes.person_id
        order by votes.n_records desc, component_anchors.anchor_node asc
    ) = 1

),

kept_ids as (

    -- a component keeps the keyed old id it holds with most records, then the oldest; an id of
    -- the unkeyed rule is replaced (its component takes a new, keyed id)
    select
        id_holders.component_index,
        id_holders.person_id
    from id_holders
    where is_keyed_person_id(id_holders.person_id)
    qualify row_number() over (
        partition by id_holders.component_index
        order by
            id_holders.n_records desc, id_holders.first_assigned_on asc, id_holders.person_id asc
    ) = 1

),

taken_ids as (

    select distinct person_id from previous_assignment
    union
    select person_id from kept_ids

),

new_ids as (

    select
        component_anchors.component_index,
        person_id_for_anchor(component_anchors.anchor_node) as first_choice,
        person_id_for_anchor(
            component_anchors.anchor_node, salt := cast({{ as_of_date() }} as varchar)
        ) as second_choice
    from component_anchors
    left join kept_ids
        on component_anchors.component_index = kept_ids.component_index
    where kept_ids.component_index is null

),

component_persons as (

    select
        component_index,
        person_id
    from kept_ids
    union all
    -- an anchor's hash may already name another person (its record moved): then salt it
    select
        new_ids.component_index,
        case
            when taken_ids.person_id is null then new_ids.first_choice
            else new_ids.second_choice
        end as person_id
    from new_ids
    left join taken_ids
        on new_ids.first_choice = taken_ids.person_id

),

final as (

    select
        component_nodes.node_id,
        component_nodes.node_type,
        component_nodes.is_record,
        component_persons.person_id,
        -- a new record counts as keeping its id, so a re-run on the same data writes the same rows
        coalesce(previous_assignment.person_id, component_persons.person_id) as previous_person_id
    from component_nodes
    inner join component_persons
        on component_nodes.component_index = component_persons.component_index
    left join previous_assignment
        on component_nodes.node_id = previous_assignment.record_node

)

select * from final
