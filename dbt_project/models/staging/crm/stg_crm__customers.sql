-- A table, not a view: phone parsing is a Python UDF (~40 s per million phones), read by several
-- identity models; materialising it parses each phone once per build.
{{ config(materialized='table') }}

with

source as (

    select * from {{ source('raw', 'crm') }}

),

keyed as (

    select
        coalesce(nullif(trim(source.source_system), ''), 'crm') as source_system,
        trim(source.crm_customer_id) as crm_customer_id,
        source.*
        exclude (source_system, crm_customer_id)
    from source

),

ranked as (

    -- the latest updated_at wins, then the latest load/file, then the last row of the file
    select
        keyed.*,
        row_number() over (
            partition by keyed.source_system, keyed.crm_customer_id
            order by
                keyed.updated_at desc nulls last,
                keyed._loaded_at desc nulls last,
                keyed._file desc nulls last,
                keyed._row_number desc nulls last
        ) as recency_rank
    from keyed

),

latest as (

    select * from ranked
    where recency_rank = 1

),

cleaned as (

    select
        latest.source_system,
        latest.crm_customer_id,
        nullif(trim(latest.first_name), '') as first_name,
        nullif(trim(latest.last_name), '') as last_name,
        identity_email(latest.email) as email,
        identity_phone(latest.phone, latest.country) as phone_e164,
        clean_identifier(latest.loyalty_card_id) as loyalty_card_id,
        clean_identifier(latest.web_user_id) as web_user_id,
        lower(trim(latest.gender)) as gender_text,
        nullif(trim(latest.street_address), '') as street_address,
        nullif(trim(latest.city), '') as city,
        {{ normalize_postcode('latest.postcode', 'latest.country') }} as postcode,
        nullif(trim(latest.state), '') as state,
        nullif(upper(trim(latest.country)), '') as country,
        latest.date_of_birth,
        latest.household_income,
        nullif(trim(latest.occupation), '') as occupation,
        latest.created_at,
        latest.updated_at
    from latest

),

final as (

    select
        crm_record_node(cleaned.source_system, cleaned.crm_customer_id) as record_node,
        cleaned.source_system,
        cleaned.crm_customer_id,
        cleaned.first_name,
        cleaned.last_name,
        lower(cleaned.first_name) as first_name_normalised,
        lower(cleaned.last_name) as last_name_normalised,
        cleaned.email,
        hmac_key(cleaned.email) as email_key,
        cleaned.phone_e164,
        hmac_key(cleaned.phone_e164) as phone_key,
        cleaned.loyalty_card_id,
        hmac_key(cleaned.loyalty_card_id) as loyalty_card_key,
        hmac_key(cleaned.web_user_id) as web_user_key,
        case
            when cleaned.gender_text in ('f', 'female', 'w', 'woman', 'girl') then 'f'
            when cleaned.gender_text in ('m', 'male', 'man', 'boy') then 'm'
            when cleaned.gender_text in (
                'x', 'd', 'o', 'other', 'diverse', 'non-binary', 'nonbinary', 'non binary', 'nb'
            ) then 'x'
        end as gender,
        cleaned.street_address,
        cleaned.city,
        cleaned.postcode,
        cleaned.state,
        cleaned.country,
        cleaned.date_of_birth,
        cleaned.household_income,
        cleaned.occupation,
        cleaned.created_at,
        cleaned.updated_at
    from cleaned

)

select * from final
