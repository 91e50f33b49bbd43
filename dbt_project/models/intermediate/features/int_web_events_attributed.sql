{# Web events of identified devices up to the end of the as_of day, with their activity date. #}
with

web_events as (

    select * from {{ ref('stg_web__events') }}

),

identity_map as (

    select * from {{ ref('identity_map') }}

),

device_persons as (

    select
        identity_map.source_key as anonymous_id,
        identity_map.person_id
    from identity_map
    where identity_map.source_system = 'web' and identity_map.person_id is not null

),

final as (

    select
        device_persons.person_id,
        web_events.event_id,
        web_events.event_at,
        cast(web_events.event_at as date) as activity_date,
        web_events.event_type,
        web_events.session_id,
        web_events.order_id,
        cast(web_events.revenue as decimal(18, 2)) as revenue,
        web_events.device_type,
        web_events.product_category,
        web_events.sku,
        web_events.page_url,
        web_events.geo_city,
        web_events.geo_region,
        web_events.geo_country,
        web_events.geo_postcode
    from web_events
    inner join device_persons
        on web_events.anonymous_id = device_persons.anonymous_id
    where web_events.event_at < {{ as_of_end() }}

)

select * from final
