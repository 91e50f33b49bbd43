-- Each source record of the identity graph with the identifier keys it carries: one row per
-- record and distinct combination of keys seen on it (a CRM record has one; a POS transaction's
-- lines or a web device's events may name several), with the record's first/last activity in
-- that combination, strictly before the end of the as_of day. The only read of the POS and web
-- staging views in the identity layer: they de-duplicate and key-hash millions of rows per read.
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
        crm_customers.email_key,
        crm_customers.phone_key,
        crm_customers.loyalty_card_key as card_key,
        crm_customers.web_user_key as user_key,
        cast(null as varchar) as pay_key,
        case
            when crm_customers.created_at < {{ as_of_end() }} then crm_customers.created_at
        end as first_seen_at,
        case
            when crm_customers.updated_at < {{ as_of_end() }} then crm_customers.updated_at
            when crm_customers.created_at < {{ as_of_end() }} then crm_customers.created_at
        end as last_seen_at
    from crm_customers

),

pos_transactions as (

    -- grouped on the keys as the view gives them: no filter on a key, which DuckDB would push
    -- below the view's projection and so hash every key twice
    select
        pos_lines.transaction_id,
        pos_lines.receipt_email_key,
        pos_lines.loyalty_card_key,
        pos_lines.payment_card_key,
        min(
            case when pos_lines.transacted_at < {{ as_of_end() }} then pos_lines.transacted_at end
        ) as first_seen_at,
        max(
            case when pos_lines.transacted_at < {{ as_of_end() }} then pos_lines.transacted_at end
        ) as last_seen_at
    from pos_lines
    group by
        pos_lines.transaction_id,
        pos_lines.receipt_email_key,
        pos_lines.loyalty_card_key,
        pos_lines.payment_card_key

),

pos_records as (

    select
        pos_record_node(pos_transactions.transaction_id) as record_node,
        'pos' as record_type,
        'pos' as source_system,
        pos_transactions.transaction_id as source_key,
        pos_transactions.receipt_email_key as email_key,
        cast(null as varchar) as phone_key,
        pos_transactions.loyalty_card_key as card_key,
        cast(null as varchar) as user_key,
        pos_transactions.payment_card_key as pay_key,
        pos_transactions.first_seen_at,
        pos_transactions.last_seen_at
    from pos_transactions

),

web_devices as (

    select
        web_events.anonymous_id,
        web_events.email_key,
        web_events.user_id_key,
        min(case when web_events.event_at < {{ as_of_end() }} then web_events.event_at end)
            as first_seen_at,
        max(case when web_events.event_at < {{ as_of_end() }} then web_events.event_at end)
            as last_seen_at
    from web_events
    group by web_events.anonymous_id, web_events.email_key, web_events.user_id_key

),

web_records as (

    select
        web_record_node(web_devices.anonymous_id) as record_node,
        'web' as record_type,
        'web' as source_system,
        web_devices.anonymous_id as source_key,
        web_devices.email_key,
        cast(null as varchar) as phone_key,
        cast(null as varchar) as card_key,
        web_devices.user_id_key as user_key,
        cast(null as varchar) as pay_key,
        web_devices.first_seen_at,
        web_devices.last_seen_at
    from web_devices

),

final as (

    select * from crm_records
    union all
    select * from pos_records
    union all
    select * from web_records

)

select * from final
