-- Record -> identifier links, with the guards deciding which of them may join records.
with

crm_customers as (

    select * from {{ ref('stg_crm__customers') }}

),

record_keys as (

    select * from {{ ref('int_identity_record_keys') }}

),

parameters as (

    select * from {{ source('identity', 'identity_parameters') }}

),

blocklist as (

    select * from {{ source('identity', 'identity_blocklist') }}

),

junk_keys as (

    select junk_values.junk_key from identity_junk_keys() as junk_values
    union
    -- configured junk values, keyed as each identifier type normalises its values
    select hmac_key(trim(blocklist.value)) from blocklist
    union
    select hmac_key(upper(trim(blocklist.value))) from blocklist
    union
    select hmac_key(normalize_email(blocklist.value)) from blocklist
    union
    select hmac_key(normalize_phone(blocklist.value, getvariable('phone_region'))) from blocklist

),

max_values_per_type as (

    select cast(max(value) as integer) as n
    from parameters
    where name = 'max_values_per_type'

),

record_links as (

    select
        record_keys.record_node,
        record_keys.record_type,
        'email' as identifier_type,
        record_keys.email_key as identifier_key
    from record_keys
    where record_keys.email_key is not null
    union all
    select
        record_keys.record_node,
        record_keys.record_type,
        'phone' as identifier_type,
        record_keys.phone_key as identifier_key
    from record_keys
    where record_keys.phone_key is not null
    union all
    select
        record_keys.record_node,
        record_keys.record_type,
        'card' as identifier_type,
        record_keys.card_key as identifier_key
    from record_keys
    where record_keys.card_key is not null
    union all
    select
        record_keys.record_node,
        record_keys.record_type,
        'user' as identifier_type,
        record_keys.user_key as identifier_key
    from record_keys
    where record_keys.user_key is not null
    union all
    select
        record_keys.record_node,
        record_keys.record_type,
        'pay' as identifier_type,
        record_keys.pay_key as identifier_key
    from record_keys
    where record_keys.pay_key is not null

),

candidate_links as (

    select distinct
        record_links.record_node,
        record_links.record_type,
        record_links.identifier_type,
        record_links.identifier_type || ':' || record_links.identifier_key as identifier_node
    from record_links
    left join junk_keys
        on record_links.identifier_key = junk_keys.junk_key
    where junk_keys.junk_key is null

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
        on
            left_record.identifier_node = right_record.identifier_node
            and left_record.record_node < right_record.record_node
    where
        left_record.first_name_normalised <> right_record.first_name_normalised
        and jaro_winkler_similarity(
            left_record.first_name_normalised, right_record.first_name_normalised
        ) < 0.85
        and not coalesce(left_record.date_of_birth = right_record.date_of_birth, false)

),

identifier_records as (

    -- how many records carry each identifier, and how many of them are CRM records or web devices
    select
        candidate_links.identifier_node,
        count(*) as n_records,
        count(case when candidate_links.record_type in ('crm', 'web') then 1 end)
            as n_person_records
    from candidate_links
    group by candidate_links.identifier_node

),

hub_identifiers as (

    -- an identifier on more CRM records or web devices than one person has is not personal
    select identifier_records.identifier_node
    from identifier_records
    where
        identifier_records.n_person_records
        > {{ var('identity_max_records_per_identifier', 20) }}

),

multi_valued_records as (

    -- records carrying more than one value of an identifier type (a POS transaction whose lines
    -- name two cards, a shared device): more links than identifier types
    select candidate_links.record_node
    from candidate_links
    group by candidate_links.record_node
    having
        count(*) > bit_count(bit_or(
            case candidate_links.identifier_type
                when 'email' then 1
                when 'phone' then 2
                when 'card' then 4
                when 'user' then 8
                when 'pay' then 16
                else 32
            end
        ))

),

value_limit_candidates as (

    -- each record carries one value of a type unless multi-valued, so only an identifier on more
    -- records than the limit, or on a multi-valued record, can see more values of a type than
    -- the limit: the others need no count
    select identifier_records.identifier_node
    from identifier_records
    cross join max_values_per_type
    where identifier_records.n_records > coalesce(max_values_per_type.n, 5)
    union
    select candidate_links.identifier_node
    from candidate_links
    inner join multi_valued_records
        on candidate_links.record_node = multi_valued_records.record_node

),

co_occurring_values as (

    -- how many distinct identifiers of each other type ride on the records of an identifier
    select
        this_link.identifier_node,
        other_link.identifier_type,
        count(distinct other_link.identifier_node) as n_values
    from candidate_links as this_link
    inner join candidate_links as other_link
        on
            this_link.record_node = other_link.record_node
            and this_link.identifier_type <> other_link.identifier_type
    where
        this_link.identifier_node in (
            select value_limit_candidates.identifier_node from value_limit_candidates
        )
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

    select
        shared_by_different_people.identifier_node,
        'shared' as exclusion_reason
    from shared_by_different_people
    union all
    select
        hub_identifiers.identifier_node,
        'hub' as exclusion_reason
    from hub_identifiers
    union all
    select
        over_value_limit.identifier_node,
        'too_many_values' as exclusion_reason
    from over_value_limit

),

exclusions as (

    -- one reason per excluded identifier
    select
        excluded_identifiers.identifier_node,
        min(excluded_identifiers.exclusion_reason) as exclusion_reason
    from excluded_identifiers
    group by excluded_identifiers.identifier_node

),

final as (

    select
        candidate_links.record_node,
        candidate_links.record_type,
        candidate_links.identifier_node,
        candidate_links.identifier_type,
        exclusions.exclusion_reason,
        exclusions.exclusion_reason is null as is_linking
    from candidate_links
    left join exclusions
        on candidate_links.identifier_node = exclusions.identifier_node

)

select * from final
