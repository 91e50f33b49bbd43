-- Record -> identifier links, with the guards deciding which of them may join records.
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

junk_keys as (

    {{ identity_junk_keys_values() }}

),

crm_keys as (

    select
        crm_customers.record_node,
        'crm' as record_type,
        crm_customers.email_key,
        crm_customers.phone_key,
        crm_customers.loyalty_card_key,
        crm_customers.web_user_key
    from crm_customers

),

crm_links as (

    select record_node, record_type, 'email' as identifier_type, email_key as identifier_key
    from crm_keys
    union all
    select record_node, record_type, 'phone' as identifier_type, phone_key as identifier_key
    from crm_keys
    union all
    select record_node, record_type, 'card' as identifier_type, loyalty_card_key as identifier_key
    from crm_keys
    union all
    select record_node, record_type, 'user' as identifier_type, web_user_key as identifier_key
    from crm_keys

),

pos_transactions as (

    select distinct
        'pos:' || pos_lines.transaction_id as record_node,
        'pos' as record_type,
        pos_lines.loyalty_card_key,
        pos_lines.receipt_email_key,
        pos_lines.payment_card_key
    from pos_lines
    where
        pos_lines.loyalty_card_key is not null
        or pos_lines.receipt_email_key is not null
        or pos_lines.payment_card_key is not null

),

pos_links as (

    select record_node, record_type, 'card' as identifier_type, loyalty_card_key as identifier_key
    from pos_transactions
    union all
    select record_node, record_type, 'email' as identifier_type, receipt_email_key as identifier_key
    from pos_transactions
    union all
    select record_node, record_type, 'pay' as identifier_type, payment_card_key as identifier_key
    from pos_transactions

),

web_identified as (

    select distinct
        'web:' || web_events.anonymous_id as record_node,
        'web' as record_type,
        web_events.user_id_key,
        web_events.email_key
    from web_events
    where web_events.user_id_key is not null or web_events.email_key is not null

),

web_links as (

    select record_node, record_type, 'user' as identifier_type, user_id_key as identifier_key
    from web_identified
    union all
    select record_node, record_type, 'email' as identifier_type, email_key as identifier_key
    from web_identified

),

candidate_links as (

    select distinct
        all_links.record_node,
        all_links.record_type,
        all_links.identifier_type,
        all_links.identifier_type || ':' || all_links.identifier_key as identifier_node
    from (
        select * from crm_links
        union all
        select * from pos_links
        union all
        select * from web_links
    ) as all_links
    left join junk_keys
        on all_links.identifier_key = junk_keys.junk_key
    where all_links.identifier_key is not null and junk_keys.junk_key is null

),

crm_contact_links as (

    select
        candidate_links.identifier_node,
        candidate_links.record_node,
        crm_customers.first_name_normalised,
        crm_customers.date_of_birth,
        count(*) over (partition by candidate_links.identifier_node) as n_crm_records
    from candidate_links
    inner join crm_customers
        on candidate_links.record_node = crm_customers.record_node
    where candidate_links.identifier_type in ('email', 'phone')

),

comparable_links as (

    select * from crm_contact_links
    where n_crm_records between 2 and {{ var('identity_max_records_per_identifier', 20) }}

),

shared_by_different_people as (

    -- two CRM records with different first names and different birth dates: a family identifier
    select distinct left_record.identifier_node
    from comparable_links as left_record
    inner join comparable_links as right_record
        on left_record.identifier_node = right_record.identifier_node
        and left_record.record_node < right_record.record_node
    where
        left_record.first_name_normalised <> right_record.first_name_normalised
        and left_record.date_of_birth <> right_record.date_of_birth

),

hub_identifiers as (

    -- an identifier on more CRM records or web devices than one person has is not personal
    select candidate_links.identifier_node
    from candidate_links
    where candidate_links.record_type in ('crm', 'web')
    group by candidate_links.identifier_node
    having count(*) > {{ var('identity_max_records_per_identifier', 20) }}

),

excluded_identifiers as (

    select identifier_node, 'shared' as exclusion_reason from shared_by_different_people
    union all
    select identifier_node, 'hub' as exclusion_reason from hub_identifiers

),

final as (

    select
        candidate_links.record_node,
        candidate_links.record_type,
        candidate_links.identifier_node,
        candidate_links.identifier_type,
        excluded.exclusion_reason,
        excluded.exclusion_reason is null as is_linking
    from candidate_links
    left join (
        select identifier_node, min(exclusion_reason) as exclusion_reason
        from excluded_identifiers
        group by identifier_node
    ) as excluded
        on candidate_links.identifier_node = excluded.identifier_node

)

select * from final
