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
    members of the previous run bought in the period since it (on a first run: the current
    members on the as_of day), whether or not they are still members: buyers, conversion rate,
    orders, revenue, average order value. Null for a segment too small to publish (it could
    describe a handful of persons). Appended per run like the history.
#}
with

summary as (

    select * from {{ ref('segment_summary') }}

),

history as (

    select * from {{ ref('int_segment_memberships_historized') }}

),

cohort as (

    -- the previous run's members, or this run's on a first run
    select
        history.segment_id,
        history.person_id
    from history
    where history.as_of = coalesce(
        (
            select max(runs.as_of) from {{ ref('segment_runs') }} as runs
            where runs.as_of < {{ as_of_date() }}
        ),
        {{ as_of_date() }}
    )

),

days as (

    select * from {{ ref('int_customer_days_aggregated') }}

),

cohort_sizes as (

    select
        segment_id,
        count(*) as cohort
    from cohort
    group by segment_id

),

member_days as (

    select
        cohort.segment_id,
        cohort.person_id,
        days.purchases,
        days.pos_net_amount + days.web_revenue as revenue
    from cohort
    inner join summary on cohort.segment_id = summary.segment_id
    inner join days
        on
            cohort.person_id = days.person_id
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
        case when summary.published then coalesce(cohort_sizes.cohort, 0) end as cohort,
        case when summary.published then coalesce(bought.buyers, 0) end as buyers,
        case
            when summary.published
                then round(coalesce(bought.buyers, 0) / nullif(cohort_sizes.cohort, 0), 6)
        end as conversion_rate,
        case when summary.published then coalesce(bought.orders, 0) end as orders,
        case
            when summary.published then cast(coalesce(bought.revenue, 0) as decimal(18, 2))
        end as revenue,
        case
            when summary.published
                then cast(bought.revenue / nullif(bought.orders, 0) as decimal(18, 2))
        end as average_order_value
    from summary
    left join bought on summary.segment_id = bought.segment_id
    left join cohort_sizes on summary.segment_id = cohort_sizes.segment_id

)

select * from final
