-- One row per source record of the identity graph: CRM record, POS transaction, web device.
with

crm_customers as (

    select * from {{ ref('stg_crm__customers') }}

),

pos_lines as (

    select * from {{ ref('stg_pos__transaction_lines') }}

),

web_events as (

    select * from {{ ref('stg_web__events') }}

),

crm_records as (

    select
        crm_customers.record_node,
        'crm' as record_type,
        crm_customers.source_system,
        crm_customers.crm_customer_id as source_key,
        case
            when crm_customers.created_at < {{ as_of_end() }} then crm_customers.created_at
        end as first_seen_at,
        case
            when crm_customers.updated_at < {{ as_of_end() }} then crm_customers.updated_at
            when crm_customers.created_at < {{ as_of_end() }} then crm_customers.created_at
        end as last_seen_at
    from crm_customers

),

pos_records as (

    select
        'pos:' || pos_lines.transaction_id as record_node,
        'pos' as record_type,
        'pos' as source_system,
        pos_lines.transaction_id as source_key,
        min(
            case when pos_lines.transacted_at < {{ as_of_end() }} then pos_lines.transacted_at end
        ) as first_seen_at,
        max(
            case when pos_lines.transacted_at < {{ as_of_end() }} then pos_lines.transacted_at end
        ) as last_seen_at
    from pos_lines
    group by pos_lines.transaction_id

),

web_records as (

    select
        'web:' || web_events.anonymous_id as record_node,
        'web' as record_type,
        'web' as source_system,
        web_events.anonymous_id as source_key,
        min(case when web_events.event_at < {{ as_of_end() }} then web_events.event_at end)
            as first_seen_at,
        max(case when web_events.event_at < {{ as_of_end() }} then web_events.event_at end)
            as last_seen_at
    from web_events
    group by web_events.anonymous_id

),

final as (

    select * from crm_records
    union all
    select * from pos_records
    union all
    select * from web_records

)

select * from final
