{#
    Customer features per person and cutoff date (as_of and every training cutoff), from the daily
    aggregates: only activity on or before the cutoff day counts. Windows of N days are the N days
    ending with the cutoff day. Rates divide by the days the person was observed (exposure_days):
    a person seen for 20 days with 2 purchases buys more often than one seen all year with 2.
#}
with

profiles as (

    select * from {{ ref('customer_profiles') }}

),

customer_days as (

    select * from {{ ref('int_customer_days_aggregated') }}

),

category_days as (

    select * from {{ ref('int_customer_category_days_aggregated') }}

),

geo_days as (

    select * from {{ ref('int_customer_geo_days_aggregated') }}

),

cutoffs as (

    {{ feature_cutoffs() }}

),

event_data_start as (

    -- nothing before the first day of event data was observed, for anyone
    select min(activity_date) as first_event_date
    from customer_days

),

spine as (

    select
        profiles.person_id,
        cutoffs.cutoff_date,
        cast(profiles.first_seen_at as date) as profile_first_seen_date,
        profiles.city,
        profiles.state,
        profiles.country,
        profiles.postcode
    from profiles
    cross join cutoffs

),

{#- Days before every cutoff's 365-day window feed only first/last dates: summarise them once. #}
{%- set history_start = dbt.dateadd('day', -(365 + training_cutoff_offsets() | max), as_of_date()) %}

old_history as (

    select
        person_id,
        min(activity_date) as first_activity_date,
        max(case when purchases > 0 then activity_date end) as last_purchase_date,
        max(case when web_events > 0 then activity_date end) as last_visit_date,
        max(case when product_views > 0 then activity_date end) as last_product_view_date,
        max(case when cart_adds > 0 then activity_date end) as last_cart_add_date,
        max(case when checkout_starts > 0 then activity_date end) as last_checkout_start_date
    from customer_days
    where activity_date <= cast({{ history_start }} as date)
    group by person_id

),

days_before_cutoffs as (

    select
        customer_days.*,
        cutoffs.cutoff_date,
        {{ dbt.datediff('customer_days.activity_date', 'cutoffs.cutoff_date', 'day') }}
            as days_before_cutoff
    from customer_days
    inner join cutoffs
        on
            customer_days.activity_date <= cutoffs.cutoff_date
            and customer_days.activity_date > cast({{ history_start }} as date)

),

activity as (

    select
        person_id,
        cutoff_date,
        min(activity_date) as first_activity_date,
        max(case when purchases > 0 then activity_date end) as last_purchase_date,
        max(case when web_events > 0 then activity_date end) as last_visit_date,
        max(case when product_views > 0 then activity_date end) as last_product_view_date,
        max(case when cart_adds > 0 then activity_date end) as last_cart_add_date,
        max(case when checkout_starts > 0 then activity_date end) as last_checkout_start_date,
        min(
            case when purchases > 0 and days_before_cutoff < 365 then activity_date end
        ) as first_purchase_date_365d,
        {{ sum_last_days('case when purchases > 0 then 1 else 0 end', 365) }}
            as purchase_days_365d,
        {{ sum_last_days('sessions_started', 365) }} as sessions_365d,
        {{ sum_last_days('purchases', 365) }} as frequency_365d,
        {{ sum_last_days('pos_net_amount', 365) }} as pos_net_amount_365d,
        {{ sum_last_days('web_revenue', 365) }} as web_revenue_365d,
        {{ sum_last_days('pos_lines', 365) }} as pos_lines_365d,
        {{ sum_last_days('pos_return_lines', 365) }} as pos_return_lines_365d,
        {{ sum_last_days('purchases', 30) }} as purchases_30d,
        {{ sum_last_days('purchases', 90) }} as purchases_90d,
        {{ sum_last_days('web_events', 7) }} as web_events_7d,
        {{ sum_last_days('web_events', 30) }} as web_events_30d,
        {{ sum_last_days('web_events', 90) }} as web_events_90d,
        {{ sum_last_days('sessions_started', 7) }} as sessions_7d,
        {{ sum_last_days('sessions_started', 30) }} as sessions_30d,
        {{ sum_last_days('sessions_started', 90) }} as sessions_90d,
        {{ sum_last_days('email_opens', 30) }} as email_opens_30d,
        {{ sum_last_days('email_clicks', 30) }} as email_clicks_30d,
        {{ sum_last_days('searches', 30) }} as searches_30d,
        {{ sum_last_days('product_views', 30) }} as product_views_30d,
        {{ sum_last_days('cart_adds', 30) }} as cart_adds_30d,
        {{ sum_last_days('checkout_starts', 30) }} as checkout_starts_30d,
        {{ sum_last_days('mobile_events', 90) }} as mobile_events_90d,
        {{ sum_last_days('desktop_events', 90) }} as desktop_events_90d,
        {{ sum_last_days('tablet_events', 90) }} as tablet_events_90d,
        {{ sum_last_days('app_events', 90) }} as app_events_90d
    from days_before_cutoffs
    group by person_id, cutoff_date

),

categories_before_cutoffs as (

    select
        category_days.person_id,
        cutoffs.cutoff_date,
        category_days.product_category,
        sum(category_days.purchases) as purchases,
        sum(category_days.amount) as amount
    from category_days
    inner join cutoffs
        on
            category_days.activity_date <= cutoffs.cutoff_date
            and category_days.activity_date
            > cast({{ dbt.dateadd('day', -365, 'cutoffs.cutoff_date') }} as date)
    group by category_days.person_id, cutoffs.cutoff_date, category_days.product_category

),

categories_ranked as (

    select
        categories_before_cutoffs.*,
        row_number() over (
            partition by categories_before_cutoffs.person_id, categories_before_cutoffs.cutoff_date
            order by
                categories_before_cutoffs.purchases desc,
                categories_before_cutoffs.amount desc,
                categories_before_cutoffs.product_category asc
        ) as category_rank
    from categories_before_cutoffs

),

categories as (

    select
        person_id,
        cutoff_date,
        count(*) as n_categories_365d,
        max(case when category_rank = 1 then product_category end) as top_category_365d
    from categories_ranked
    group by person_id, cutoff_date

),

geos_before_cutoffs as (

    select
        geo_days.person_id,
        cutoffs.cutoff_date,
        geo_days.geo_city,
        geo_days.geo_region,
        geo_days.geo_country,
        geo_days.geo_postcode,
        sum(geo_days.web_events) as web_events,
        max(geo_days.activity_date) as last_seen_date
    from geo_days
    inner join cutoffs
        on geo_days.activity_date <= cutoffs.cutoff_date
    group by
        geo_days.person_id,
        cutoffs.cutoff_date,
        geo_days.geo_city,
        geo_days.geo_region,
        geo_days.geo_country,
        geo_days.geo_postcode

),

geos_ranked as (

    select
        geos_before_cutoffs.*,
        row_number() over (
            partition by geos_before_cutoffs.person_id, geos_before_cutoffs.cutoff_date
            order by
                geos_before_cutoffs.web_events desc,
                geos_before_cutoffs.last_seen_date desc,
                geos_before_cutoffs.geo_country asc,
                geos_before_cutoffs.geo_region asc,
                geos_before_cutoffs.geo_city asc,
                geos_before_cutoffs.geo_postcode asc
        ) as geo_rank
    from geos_before_cutoffs

),

web_geos as (

    select * from geos_ranked
    where geo_rank = 1

),

combined as (

    select
        spine.person_id,
        spine.cutoff_date,
        spine.profile_first_seen_date,
        event_data_start.first_event_date,
        coalesce(old_history.first_activity_date, activity.first_activity_date)
            as first_activity_date,
        coalesce(activity.last_purchase_date, old_history.last_purchase_date)
            as last_purchase_date,
        coalesce(activity.last_visit_date, old_history.last_visit_date) as last_visit_date,
        coalesce(activity.last_product_view_date, old_history.last_product_view_date)
            as last_product_view_date,
        coalesce(activity.last_cart_add_date, old_history.last_cart_add_date)
            as last_cart_add_date,
        coalesce(activity.last_checkout_start_date, old_history.last_checkout_start_date)
            as last_checkout_start_date,
        activity.first_purchase_date_365d,
        coalesce(activity.purchase_days_365d, 0) as purchase_days_365d,
        coalesce(activity.sessions_365d, 0) as sessions_365d,
        coalesce(activity.frequency_365d, 0) as frequency_365d,
        coalesce(activity.pos_net_amount_365d, 0) as pos_net_amount_365d,
        coalesce(activity.web_revenue_365d, 0) as web_revenue_365d,
        coalesce(activity.pos_lines_365d, 0) as pos_lines_365d,
        coalesce(activity.pos_return_lines_365d, 0) as pos_return_lines_365d,
        coalesce(activity.purchases_30d, 0) as purchases_30d,
        coalesce(activity.purchases_90d, 0) as purchases_90d,
        coalesce(activity.web_events_7d, 0) as web_events_7d,
        coalesce(activity.web_events_30d, 0) as web_events_30d,
        coalesce(activity.web_events_90d, 0) as web_events_90d,
        coalesce(activity.sessions_7d, 0) as sessions_7d,
        coalesce(activity.sessions_30d, 0) as sessions_30d,
        coalesce(activity.sessions_90d, 0) as sessions_90d,
        coalesce(activity.email_opens_30d, 0) as email_opens_30d,
        coalesce(activity.email_clicks_30d, 0) as email_clicks_30d,
        coalesce(activity.searches_30d, 0) as searches_30d,
        coalesce(activity.product_views_30d, 0) as product_views_30d,
        coalesce(activity.cart_adds_30d, 0) as cart_adds_30d,
        coalesce(activity.checkout_starts_30d, 0) as checkout_starts_30d,
        coalesce(activity.mobile_events_90d, 0) as mobile_events_90d,
        coalesce(activity.desktop_events_90d, 0) as desktop_events_90d,
        coalesce(activity.tablet_events_90d, 0) as tablet_events_90d,
        coalesce(activity.app_events_90d, 0) as app_events_90d,
        coalesce(categories.n_categories_365d, 0) as n_categories_365d,
        categories.top_category_365d,
        case
            when
                coalesce(spine.city, spine.state, spine.country, spine.postcode) is not null
                then 'profile'
            when web_geos.person_id is not null then 'web'
        end as home_source,
        spine.city,
        spine.state,
        spine.country,
        spine.postcode,
        web_geos.geo_city,
        web_geos.geo_region,
        web_geos.geo_country,
        web_geos.geo_postcode
    from spine
    cross join event_data_start
    left join activity
        on spine.person_id = activity.person_id and spine.cutoff_date = activity.cutoff_date
    left join old_history
        on spine.person_id = old_history.person_id
    left join categories
        on spine.person_id = categories.person_id and spine.cutoff_date = categories.cutoff_date
    left join web_geos
        on spine.person_id = web_geos.person_id and spine.cutoff_date = web_geos.cutoff_date

),

first_seen as (

    -- the earlier of the profile's first_seen_at and the first activity, if by the cutoff day
    select
        combined.*,
        case
            when combined.profile_first_seen_date > combined.cutoff_date
                then combined.first_activity_date
            when combined.first_activity_date < combined.profile_first_seen_date
                then combined.first_activity_date
            else coalesce(combined.profile_first_seen_date, combined.first_activity_date)
        end as first_seen_date
    from combined

),

exposed as (

    -- days observed in the 365-day window: from the latest of first seen, the first day of event
    -- data and the window's first day, to the cutoff day (both days included)
    select
        first_seen.*,
        case
            when
                first_seen.first_seen_date is not null
                and first_seen.first_event_date <= first_seen.cutoff_date
                then {{ dbt.datediff(
                    'greatest(first_seen.first_seen_date, first_seen.first_event_date, '
                    ~ 'cast(' ~ dbt.dateadd('day', -364, 'first_seen.cutoff_date') ~ ' as date))',
                    'first_seen.cutoff_date',
                    'day'
                ) }} + 1
        end as exposure_days,
        case
            when first_seen.purchase_days_365d >= 2
                then cast(
                    {{ dbt.datediff(
                        'first_seen.first_purchase_date_365d',
                        'first_seen.last_purchase_date',
                        'day'
                    ) }} as double
                ) / (first_seen.purchase_days_365d - 1)
        end as mean_purchase_gap_days
    from first_seen

),

rates as (

    select
        exposed.*,
        cast(exposed.frequency_365d as double)
        / nullif(exposed.exposure_days, 0) as purchase_rate_365d,
        cast(exposed.purchases_90d as double)
        / nullif(least(exposed.exposure_days, 90), 0) as purchase_rate_90d,
        cast(exposed.purchases_30d as double)
        / nullif(least(exposed.exposure_days, 30), 0) as purchase_rate_30d,
        cast(exposed.sessions_365d as double)
        / nullif(exposed.exposure_days, 0) as session_rate_365d,
        cast(exposed.sessions_30d as double)
        / nullif(least(exposed.exposure_days, 30), 0) as session_rate_30d
    from exposed

),

final as (

    select
        person_id,
        cutoff_date,
        first_seen_date,
        cast(
            {{ dbt.datediff('last_purchase_date', 'cutoff_date', 'day') }} as bigint
        ) as recency_days,
        cast(frequency_365d as bigint) as frequency_365d,
        cast(pos_net_amount_365d + web_revenue_365d as double) as monetary_365d,
        case
            when frequency_365d > 0
                then cast(pos_net_amount_365d + web_revenue_365d as double) / frequency_365d
        end as avg_order_value_365d,
        cast(purchases_30d as bigint) as purchases_30d,
        cast(purchases_90d as bigint) as purchases_90d,
        case
            when pos_lines_365d > 0 then cast(pos_return_lines_365d as double) / pos_lines_365d
            else 0.0
        end as return_rate_365d,
        cast(
            {{ dbt.datediff('first_seen_date', 'cutoff_date', 'day') }} as bigint
        ) as tenure_days,
        cast(
            {{ dbt.datediff('last_visit_date', 'cutoff_date', 'day') }} as bigint
        ) as days_since_last_visit,
        cast(web_events_7d as bigint) as web_events_7d,
        cast(web_events_30d as bigint) as web_events_30d,
        cast(web_events_90d as bigint) as web_events_90d,
        cast(sessions_7d as bigint) as sessions_7d,
        cast(sessions_30d as bigint) as sessions_30d,
        cast(sessions_90d as bigint) as sessions_90d,
        cast(email_opens_30d as bigint) as email_opens_30d,
        cast(email_clicks_30d as bigint) as email_clicks_30d,
        cast(searches_30d as bigint) as searches_30d,
        cast(product_views_30d as bigint) as product_views_30d,
        cast(cart_adds_30d as bigint) as cart_adds_30d,
        cast(checkout_starts_30d as bigint) as checkout_starts_30d,
        cast(
            case when purchases_30d = 0 then product_views_30d else 0 end as bigint
        ) as product_views_without_purchase_30d,
        cast(
            case when purchases_30d = 0 then cart_adds_30d else 0 end as bigint
        ) as cart_adds_without_purchase_30d,
        {%- for device in ['mobile', 'desktop', 'tablet', 'app'] %}
            case
                when
                    web_events_90d > 0
                    then cast({{ device }}_events_90d as double) / web_events_90d
                else 0.0
            end as share_{{ device }},
        {%- endfor %}
        case
            when web_revenue_365d + greatest(pos_net_amount_365d, 0) > 0
                then web_revenue_365d / (web_revenue_365d + greatest(pos_net_amount_365d, 0))
        end as online_share_365d,
        cast(n_categories_365d as bigint) as n_categories_365d,
        cast(top_category_365d as varchar) as top_category_365d,
        cast(case when home_source = 'profile' then city else geo_city end as varchar)
            as home_city,
        cast(case when home_source = 'profile' then state else geo_region end as varchar)
            as home_region,
        cast(case when home_source = 'profile' then country else geo_country end as varchar)
            as home_country,
        cast(case when home_source = 'profile' then postcode else geo_postcode end as varchar)
            as home_postcode,
        cast(exposure_days as bigint) as exposure_days,
        purchase_rate_30d,
        purchase_rate_90d,
        purchase_rate_365d,
        -- a trend compares a recent window with a longer observed one: none when they coincide
        case
            when frequency_365d > 0 and exposure_days > 30
                then purchase_rate_30d / purchase_rate_365d
        end as purchase_trend_30d,
        case
            when frequency_365d > 0 and exposure_days > 90
                then purchase_rate_90d / purchase_rate_365d
        end as purchase_trend_90d,
        mean_purchase_gap_days,
        cast(
            {{ dbt.datediff('last_purchase_date', 'cutoff_date', 'day') }} as double
        ) / mean_purchase_gap_days as recency_gap_ratio,
        cast(
            {{ dbt.datediff('last_product_view_date', 'cutoff_date', 'day') }} as bigint
        ) as days_since_last_product_view,
        cast(
            {{ dbt.datediff('last_cart_add_date', 'cutoff_date', 'day') }} as bigint
        ) as days_since_last_cart_add,
        cast(
            {{ dbt.datediff('last_checkout_start_date', 'cutoff_date', 'day') }} as bigint
        ) as days_since_last_checkout_start,
        session_rate_365d,
        case
            when sessions_365d > 0 and exposure_days > 30
                then session_rate_30d / session_rate_365d
        end as session_trend_30d
    from rates

)

select * from final
