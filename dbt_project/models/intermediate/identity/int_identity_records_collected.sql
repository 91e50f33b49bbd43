-- One row per source record of the identity graph: CRM record, POS transaction, web device.
with

record_keys as (

    select * from {{ ref('int_identity_record_keys') }}

),

final as (

    select
        record_keys.record_node,
        record_keys.record_type,
        record_keys.source_system,
        record_keys.source_key,
        min(record_keys.first_seen_at) as first_seen_at,
        max(record_keys.last_seen_at) as last_seen_at
    from record_keys
    group by
        record_keys.record_node,
        record_keys.record_type,
        record_keys.source_system,
        record_keys.source_key

)

select * from final
