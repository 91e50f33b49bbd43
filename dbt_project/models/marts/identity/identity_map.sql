with

records as (

    select * from {{ ref('int_identity_records_collected') }}

),

nodes as (

    select * from {{ ref('int_identity_nodes_resolved') }}

),

final as (

    select
        records.source_system,
        records.source_key,
        nodes.person_id
    from records
    left join nodes
        on records.record_node = nodes.node_id

)

select * from final
