{# Web events per person, day and reported location (city, region, country, postcode). #}
with

web_events as (

    select * from {{ ref('int_web_events_attributed') }}

),

located as (

    select * from web_events
    where
        geo_city is not null
        or geo_region is not null
        or geo_country is not null
        or geo_postcode is not null

),

final as (

    select
        person_id,
        activity_date,
        geo_city,
        geo_region,
        geo_country,
        geo_postcode,
        cast(count(*) as bigint) as web_events
    from located
    group by person_id, activity_date, geo_city, geo_region, geo_country, geo_postcode

)

select * from final
