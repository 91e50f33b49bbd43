{#
    What members and holdout members of each segment did after they entered it, for the lift
    statistics (marts.segment_lift): every spell that started while the segment was published,
    whether or not the person is still a member (a buyer often leaves a "has not bought"
    segment: counting current members only would hide the conversions). Per segment and arm:
    spells, converters (a purchase in any channel after the entry day, within var
    lift_window_days of it and up to as_of), and the sum and sum of squares of their revenue in
    that window (sufficient statistics of a Welch test). Spells that started today have had no
    time to convert and count as not converted in both arms alike.
#}
with

members as (

    -- one row per spell: its entry run, where the segment was published
    select
        segment_id,
        person_id,
        entered_on,
        is_holdout
    from {{ ref('int_segment_memberships_historized') }}
    where as_of = entered_on and published

),

days as (

    select * from {{ ref('int_customer_days_aggregated') }}
    where purchases > 0

),

per_person as (

    select
        members.segment_id,
        members.person_id,
        members.is_holdout,
        count(days.activity_date) > 0 as converted,
        coalesce(sum(days.pos_net_amount + days.web_revenue), 0) as revenue
    from members
    left join days
        on
            members.person_id = days.person_id
            and members.entered_on < days.activity_date
            and days.activity_date <= least(
                {{ as_of_date() }},
                members.entered_on + {{ var('lift_window_days') | int }}
            )
    group by members.segment_id, members.person_id, members.entered_on, members.is_holdout

),

final as (

    select
        segment_id,
        is_holdout,
        count(*) as persons,
        count(*) filter (where converted) as converters,
        cast(sum(revenue) as double) as revenue_sum,
        cast(sum(revenue * revenue) as double) as revenue_sumsq,
        {{ as_of_date() }} as as_of
    from per_person
    group by segment_id, is_holdout

)

select * from final
