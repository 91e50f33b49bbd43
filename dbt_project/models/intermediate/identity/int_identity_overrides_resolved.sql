-- Manual overrides with the identity nodes of both records; unknown records are flagged, not
-- dropped, so the report shows an override that matched nothing.
with

overrides as (

    select * from {{ source('identity', 'identity_overrides') }}

),

records as (

    select * from {{ ref('int_identity_records_collected') }}

),

named as (

    select
        source_record_node(overrides.left_source_system, overrides.left_source_key)
            as left_record_node,
        source_record_node(overrides.right_source_system, overrides.right_source_key)
            as right_record_node,
        overrides.action,
        overrides.reason
    from overrides

),

final as (

    select distinct
        named.left_record_node,
        named.right_record_node,
        named.action,
        named.reason,
        left_records.record_node is not null and right_records.record_node is not null
            as is_applicable
    from named
    left join records as left_records
        on named.left_record_node = left_records.record_node
    left join records as right_records
        on named.right_record_node = right_records.record_node

)

select * from final
