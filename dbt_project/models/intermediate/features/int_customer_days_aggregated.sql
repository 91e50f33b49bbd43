{#
    One row per person and day with any POS or web activity: the daily measures every windowed
    feature sums, so the feature model never rescans events. A session counts on its first day.
#}
with

pos_lines as (

    select * from {{ ref('int_pos_lines_attributed') }}

),

web_events as (

    select * from {{ ref('int_web_events_attributed') }}

),

pos_days as (

    select
        person_id,
        activity_date,
        count(distinct case when not is_return then transaction_id end) as pos_orders,
        sum(line_amount) as pos_net_amount,
        count(*) as pos_lines,
        sum(case when is_return then 1 else 0 end) as pos_return_lines
    from pos_lines
    group by person_id, activity_date

),

web_days as (

    select
        person_id,
        activity_date,
        count(*) as web_events,
        sum(case when event_type = 'email_open' then 1 else 0 end) as email_opens,
        sum(case when event_type = 'email_click' then 1 else 0 end) as email_clicks,
        sum(case when event_type = 'search' then 1 else 0 end) as searches,
        sum(case when event_type = 'product_view' then 1 else 0 end) as product_views,
        sum(case when event_type = 'add_to_cart' then 1 else 0 end) as cart_adds,
        sum(case when event_type = 'checkout_start' then 1 else 0 end) as checkout_starts,
        sum(case when device_type = 'mobile' then 1 else 0 end) as mobile_events,
        sum(case when device_type = 'desktop' then 1 else 0 end) as desktop_events,
        sum(case when device_type = 'tablet' then 1 else 0 end) as tablet_events,
        sum(case when device_type = 'app' then 1 else 0 end) as app_events
    from web_events
    group by person_id, activity_date

),

web_orders as (

    -- purchase events of one order on one day count once (a distinct count per day is slow)
    select
        person_id,
        activity_date,
        coalesce(order_id, event_id) as order_key,
        sum(coalesce(revenue, 0)) as revenue
    from web_events
    where event_type = 'purchase'
    group by person_id, activity_date, coalesce(order_id, event_id)

),

web_order_days as (

    select
        person_id,
        activity_date,
        count(*) as web_orders,
        sum(revenue) as web_revenue
    from web_orders
    group by person_id, activity_date

),

session_starts as (

    select
        person_id,
        session_id,
        min(activity_date) as activity_date
    from web_events
    where session_id is not null
    group by person_id, session_id

),

session_days as (

    select
        person_id,
        activity_date,
        count(*) as sessions_started
    from session_starts
    group by person_id, activity_date

),

joined as (

    select
        coalesce(pos_days.person_id, web_days.person_id) as person_id,
        coalesce(pos_days.activity_date, web_days.activity_date) as activity_date,
        coalesce(pos_days.pos_orders, 0) as pos_orders,
        coalesce(pos_days.pos_net_amount, 0) as pos_net_amount,
        coalesce(pos_days.pos_lines, 0) as pos_lines,
        coalesce(pos_days.pos_return_lines, 0) as pos_return_lines,
        coalesce(web_days.web_events, 0) as web_events,
        coalesce(web_order_days.web_orders, 0) as web_orders,
        coalesce(web_order_days.web_revenue, 0) as web_revenue,
        coalesce(web_days.email_opens, 0) as email_opens,
        coalesce(web_days.email_clicks, 0) as email_clicks,
        coalesce(web_days.searches, 0) as searches,
        coalesce(web_days.product_views, 0) as product_views,
        coalesce(web_days.cart_adds, 0) as cart_adds,
        coalesce(web_days.checkout_starts, 0) as checkout_starts,
        coalesce(web_days.mobile_events, 0) as mobile_events,
        coalesce(web_days.desktop_events, 0) as desktop_events,
        coalesce(web_days.tablet_events, 0) as tablet_events,
        coalesce(web_days.app_events, 0) as app_events
    from pos_days
    full outer join web_days
        on
            pos_days.person_id = web_days.person_id
            and pos_days.activity_date = web_days.activity_date
    left join web_order_days
        on
            web_days.person_id = web_order_days.person_id
            and web_days.activity_date = web_order_days.activity_date

),

final as (

    select
        joined.person_id,
        joined.activity_date,
        cast(joined.pos_orders + joined.web_orders as bigint) as purchases,
        cast(joined.pos_orders as bigint) as pos_orders,
        cast(joined.pos_net_amount as decimal(18, 2)) as pos_net_amount,
        cast(joined.pos_lines as bigint) as pos_lines,
        cast(joined.pos_return_lines as bigint) as pos_return_lines,
        cast(joined.web_events as bigint) as web_events,
        cast(coalesce(session_days.sessions_started, 0) as bigint) as sessions_started,
        cast(joined.web_orders as bigint) as web_orders,
        cast(joined.web_revenue as decimal(18, 2)) as web_revenue,
        cast(joined.email_opens as bigint) as email_opens,
        cast(joined.email_clicks as bigint) as email_clicks,
        cast(joined.searches as bigint) as searches,
        cast(joined.product_views as bigint) as product_views,
        cast(joined.cart_adds as bigint) as cart_adds,
        cast(joined.checkout_starts as bigint) as checkout_starts,
        cast(joined.mobile_events as bigint) as mobile_events,
        cast(joined.desktop_events as bigint) as desktop_events,
        cast(joined.tablet_events as bigint) as tablet_events,
        cast(joined.app_events as bigint) as app_events
    from joined
    left join session_days
        on
            joined.person_id = session_days.person_id
            and joined.activity_date = session_days.activity_date

)

select * from final
