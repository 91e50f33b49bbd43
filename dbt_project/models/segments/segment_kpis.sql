{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        full_refresh=false,
        pre_hook="{% if is_incremental() %}delete from {{ this }} where as_of = {{ as_of_date() }}{% endif %}"
    )
}}
{#
    Per segment and run date: size, growth and churn since the previous run, and what the
    members bought in the period since it (the as_of day alone on a first run): buyers,
    conversion rate, orders, revenue, average order value. Appended per run like the history.
#}
with

summary as (

    select * from {{ ref('segment_summary') }}

),

members as (

    select * from {{ ref('segment_membership_history') }}
    where as_of = {{ as_of_date() }}

),

days as (

    select * from {{ ref('int_customer_days_aggregated') }}

),

member_days as (

    select
        members.segment_id,
        members.person_id,
        days.purchases,
        days.pos_net_amount + days.web_revenue as revenue
    from members
    inner join summary on members.segment_id = summary.segment_id
    inner join days
        on
            members.person_id = days.person_id
            and days.activity_date <= {{ as_of_date() }}
            and days.activity_date > coalesce(summary.previous_as_of, {{ as_of_date() }} - 1)
    where days.purchases > 0

),

bought as (

    select
        segment_id,
        count(distinct person_id) as buyers,
        sum(purchases) as orders,
        sum(revenue) as revenue
    from member_days
    group by segment_id

),

final as (

    select
        summary.segment_id,
        summary.as_of,
        coalesce(summary.previous_as_of + 1, summary.as_of) as period_start,
        summary.members,
        summary.entered,
        summary.exited,
        summary.size_change as growth,
        round(summary.exited / nullif(summary.previous_members, 0), 6) as churn_rate,
        coalesce(bought.buyers, 0) as buyers,
        round(coalesce(bought.buyers, 0) / nullif(summary.members, 0), 6) as conversion_rate,
        coalesce(bought.orders, 0) as orders,
        cast(coalesce(bought.revenue, 0) as decimal(18, 2)) as revenue,
        cast(bought.revenue / nullif(bought.orders, 0) as decimal(18, 2)) as average_order_value
    from summary
    left join bought on summary.segment_id = bought.segment_id

)

select * from final
