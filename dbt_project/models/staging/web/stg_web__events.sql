with

source as (

    -- events older than the retention window are out of every model
    select * from {{ source('raw', 'web') }}
    where event_at >= {{ retention_start() }}

),

ranked as (

    select
        source.*,
        row_number() over (
            partition by source.event_id
            order by source._loaded_at, source._file, source._row_number
        ) as occurrence
    from source

),

first_loaded as (

    select * from ranked
    where occurrence = 1

),

cleaned as (

    select
        event_id,
        event_at,
        lower(trim(event_type)) as event_type,
        anonymous_id,
        clean_identifier(user_id) as user_id,
        identity_email(email) as email,
        nullif(trim(session_id), '') as session_id,
        nullif(trim(page_url), '') as page_url,
        nullif(trim(sku), '') as sku,
        nullif(lower(trim(product_category)), '') as product_category,
        nullif(trim(search_query), '') as search_query,
        nullif(trim(order_id), '') as order_id,
        revenue,
        case
            when lower(trim(device_type)) in ('mobile', 'desktop', 'tablet', 'app')
                then lower(trim(device_type))
        end as device_type,
        nullif(trim(geo_city), '') as geo_city,
        nullif(trim(geo_region), '') as geo_region,
        nullif(trim(geo_country), '') as geo_country,
        nullif(trim(geo_postcode), '') as geo_postcode,
        nullif(trim(utm_source), '') as utm_source,
        nullif(trim(utm_medium), '') as utm_medium,
        nullif(trim(utm_campaign), '') as utm_campaign
    from first_loaded

),

final as (

    select
        event_id,
        event_at,
        event_type,
        anonymous_id,
        hmac_key(user_id) as user_id_key,
        hmac_key(email) as email_key,
        session_id,
        page_url,
        sku,
        product_category,
        search_query,
        order_id,
        revenue,
        device_type,
        geo_city,
        geo_region,
        geo_country,
        geo_postcode,
        utm_source,
        utm_medium,
        utm_campaign
    from cleaned

)

select * from final
