{#
    Behaviour per person as of the run, for the persona clusters (ml/clusters.py): how often they
    buy and browse, where and how they buy, and whether that is changing. Rates are per 30 days
    of observed exposure (the 365 days ending with as_of, or fewer since the first activity), so
    a person seen for 20 days is compared on the same footing as one seen for a year. A measure
    with nothing to measure (no purchase, no basket, no session) is null, not zero.
#}
with

features as (

    select person_id from {{ ref('customer_features') }}

),

customer_days as (

    select * from {{ ref('int_customer_days_aggregated') }}
    where activity_date <= {{ as_of_date() }}

),

first_activity as (

    select
        person_id,
        min(activity_date) as first_activity_date
    from customer_days
    group by person_id

),

window_days as (

    select
        customer_days.*,
        date_diff('day', customer_days.activity_date, {{ as_of_date() }}) as days_before
    from customer_days
    where customer_days.activity_date > {{ as_of_date() }} - 365

),

per_person as (

    select
        person_id,
        sum(pos_orders) as pos_orders,
        sum(web_orders) as web_orders,
        sum(case when purchases > 0 then 1 else 0 end) as purchase_days,
        sum(case when purchases > 0 and days_before < 60 then 1 else 0 end) as purchase_days_60d,
        sum(pos_lines - pos_return_lines) as pos_sale_lines,
        sum(pos_net_amount) + sum(web_revenue) as revenue,
        sum(web_events) as web_events,
        sum(sessions_started) as sessions,
        sum(product_views) as product_views,
        sum(cart_adds) as cart_adds,
        sum(mobile_events) as mobile_events,
        sum(desktop_events) as desktop_events,
        sum(tablet_events) as tablet_events,
        sum(app_events) as app_events
    from window_days
    group by person_id

),

exposure as (

    select
        per_person.*,
        least(
            365, date_diff('day', first_activity.first_activity_date, {{ as_of_date() }}) + 1
        ) as exposure_days
    from per_person
    inner join first_activity on per_person.person_id = first_activity.person_id

),

final as (

    select
        features.person_id,
        cast(coalesce(exposure.pos_orders + exposure.web_events, 0) as bigint)
            as activity_events_365d,
        cast(exposure.exposure_days as bigint) as exposure_days,
        30.0 * exposure.purchase_days / exposure.exposure_days as purchase_days_per_30d,
        30.0 * exposure.sessions / exposure.exposure_days as sessions_per_30d,
        case
            when exposure.pos_orders + exposure.web_orders > 0
                then
                    cast(exposure.pos_orders as double)
                    / (exposure.pos_orders + exposure.web_orders)
        end as store_order_share,
        case
            when exposure.pos_orders > 0
                then cast(exposure.pos_sale_lines as double) / exposure.pos_orders
        end as lines_per_basket,
        case
            when exposure.pos_orders + exposure.web_orders > 0
                then
                    cast(exposure.revenue as double)
                    / (exposure.pos_orders + exposure.web_orders)
        end as revenue_per_order,
        case
            when exposure.purchase_days > 0
                then
                    (exposure.purchase_days_60d / least(60, exposure.exposure_days))
                    / (cast(exposure.purchase_days as double) / exposure.exposure_days)
        end as recent_purchase_ratio,
        case
            when exposure.sessions > 0
                then cast(exposure.product_views as double) / exposure.sessions
        end as product_views_per_session,
        case
            when exposure.sessions > 0
                then cast(exposure.cart_adds as double) / exposure.sessions
        end as cart_adds_per_session,
        case
            when exposure.web_events > 0
                then cast(exposure.mobile_events as double) / exposure.web_events
        end as mobile_event_share,
        case
            when exposure.web_events > 0
                then cast(exposure.desktop_events as double) / exposure.web_events
        end as desktop_event_share,
        case
            when exposure.web_events > 0
                then cast(exposure.tablet_events as double) / exposure.web_events
        end as tablet_event_share,
        case
            when exposure.web_events > 0
                then cast(exposure.app_events as double) / exposure.web_events
        end as app_event_share
    from features
    left join exposure on features.person_id = exposure.person_id

)

select * from final
