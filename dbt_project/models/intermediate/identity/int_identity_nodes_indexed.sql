-- Every graph node with a dense integer index for the connected-components step.
-- Records carrying no usable identifier at all (cash sales) are left out: they belong to no one.
with

records as (

    select * from {{ ref('int_identity_records_collected') }}

),

links as (

    select * from {{ ref('int_identity_links_collected') }}

),

identified_pos as (

    select distinct links.record_node
    from links
    where links.record_type = 'pos'

),

record_nodes as (

    select
        records.record_node as node_id,
        records.record_type as node_type,
        true as is_record
    from records
    left join identified_pos
        on records.record_node = identified_pos.record_node
    where records.record_type <> 'pos' or identified_pos.record_node is not null

),

identifier_nodes as (

    select distinct
        links.identifier_node as node_id,
        links.identifier_type as node_type,
        false as is_record
    from links
    where links.is_linking

),

all_nodes as (

    select * from record_nodes
    union all
    select * from identifier_nodes

),

final as (

    select
        all_nodes.node_id,
        all_nodes.node_type,
        all_nodes.is_record,
        -- numbered in node order so a re-run on the same data writes the same table
        cast(row_number() over (order by all_nodes.node_id) - 1 as integer) as node_index
    from all_nodes

)

select * from final
