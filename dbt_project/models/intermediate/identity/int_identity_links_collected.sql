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

parameters as (

    select * from {{ source('identity', 'identity_parameters') }}

),

blocklist as (

    select * from {{ source('identity', 'identity_blocklist') }}

),

junk_keys as (

    {{ identity_junk_keys_values() }}
    union
    -- configured junk values, keyed as each identifier type normalises its values
    select {{ hmac_key('trim(blocklist.value)') }} from blocklist
    union
    select {{ hmac_key('upper(trim(blocklist.value))') }} from blocklist
    union
    select {{ hmac_key(normalize_email('blocklist.value')) }} from blocklist
    union
    select {{ hmac_key(normalize_phone('blocklist.value')) }} from blocklist

),

max_values_per_type as (

    select cast(max(value) as integer) as n
    from parameters
    where name = 'max_values_per_type'

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

    -- two CRM records with clearly different first names and birth dates that are not the same
    -- (different, or one missing): a family identifier. A true duplicate under a nickname loses
    -- this link but keeps the probabilistic one, which knows nicknames.
    select distinct left_record.identifier_node
    from comparable_links as left_record
    inner join comparable_links as right_record
        on left_record.identifier_node = right_record.identifier_node
        and left_record.record_node < right_record.record_node
    where
        left_record.first_name_normalised <> right_record.first_name_normalised
        and jaro_winkler_similarity(
            left_record.first_name_normalised, right_record.first_name_normalised
        ) < 0.85
        and not coalesce(left_record.date_of_birth = right_record.date_of_birth, false)

),

hub_identifiers as (

    -- an identifier on more CRM records or web devices than one person has is not personal
    select candidate_links.identifier_node
    from candidate_links
    where candidate_links.record_type in ('crm', 'web')
    group by candidate_links.identifier_node
    having count(*) > {{ var('identity_max_records_per_identifier', 20) }}

),

co_occurring_values as (

    -- how many distinct identifiers of each other type ride on the records of an identifier
    select
        this_link.identifier_node,
        other_link.identifier_type,
        count(distinct other_link.identifier_node) as n_values
    from candidate_links as this_link
    inner join candidate_links as other_link
        on this_link.record_node = other_link.record_node
        and this_link.identifier_type <> other_link.identifier_type
    group by this_link.identifier_node, other_link.identifier_type

),

over_value_limit as (

    -- a shop's loyalty card scanned for strangers carries more payment cards or emails than one
    -- person has: it must not chain them together
    select distinct co_occurring_values.identifier_node
    from co_occurring_values
    cross join max_values_per_type
    where co_occurring_values.n_values > coalesce(max_values_per_type.n, 5)

),

excluded_identifiers as (

    select identifier_node, 'shared' as exclusion_reason from shared_by_different_people
    union all
    select identifier_node, 'hub' as exclusion_reason from hub_identifiers
    union all
    select identifier_node, 'too_many_values' as exclusion_reason from over_value_limit

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
