{#
    One row per declared segment as of the run: how many persons meet its condition
    (`eligible`), how many of them are left out for lack of consent to its purpose or by an
    exclusive group, the members and their holdout, whether it is published (members >=
    min_size), entries and exits since the previous run and the size change, and the members'
    mean profile.
#}
with

definitions as (

    select * from {{ ref('segment_definitions') }}

),

resolved as (

    select * from {{ ref('int_segment_memberships_resolved') }}

),

history as (

    select * from {{ ref('int_segment_memberships_historized') }}

),

previous_run as (

    select max(as_of) as as_of from {{ ref('segment_runs') }}
    where as_of < {{ as_of_date() }}

),

features as (

    select * from {{ ref('customer_features') }}

),

scores as (

    select * from {{ source('segments', 'customer_scores') }}

),

persons as (

    select count(*) as n from {{ ref('customer_profiles') }}

),

judged as (

    select
        segment_id,
        count(*) as eligible,
        count(*) filter (where left_out = 'no_consent') as excluded_no_consent,
        count(*) filter (where left_out = 'group') as excluded_by_group
    from resolved
    group by segment_id

),

current_members as (

    select * from history
    where as_of = {{ as_of_date() }}

),

previous_members as (

    select history.*
    from history
    inner join previous_run on history.as_of = previous_run.as_of

),

member_stats as (

    select
        current_members.segment_id,
        count(*) as members,
        count(*) filter (where current_members.is_holdout) as holdout_members,
        count(*) filter (
            where current_members.entered_on = current_members.as_of
        ) as entered,
        -- rounded: a parallel average of doubles differs in its last bits from run to run
        round(avg(features.recency_days), 6) as mean_recency_days,
        round(avg(features.frequency_365d), 6) as mean_frequency_365d,
        round(avg(features.monetary_365d), 6) as mean_monetary_365d,
        round(avg(features.web_events_30d), 6) as mean_web_events_30d,
        round(avg(scores.propensity_30d), 6) as mean_propensity_30d
    from current_members
    left join features on current_members.person_id = features.person_id
    left join scores on current_members.person_id = scores.person_id
    group by current_members.segment_id

),

previous_stats as (

    select
        previous_members.segment_id,
        count(*) as previous_members,
        count(*) filter (where current_members.person_id is null) as exited
    from previous_members
    left join current_members
        on
            previous_members.segment_id = current_members.segment_id
            and previous_members.person_id = current_members.person_id
    group by previous_members.segment_id

),

served_profiles as (

    select member_stats.*
    from member_stats
    inner join definitions on member_stats.segment_id = definitions.segment_id
    where member_stats.members >= definitions.min_size

),

final as (

    select
        definitions.segment_id,
        definitions.name,
        definitions.kind,
        definitions.purpose,
        definitions.segment_group,
        definitions.version,
        {{ as_of_date() }} as as_of,
        coalesce(judged.eligible, 0) as eligible,
        coalesce(judged.excluded_no_consent, 0) as excluded_no_consent,
        coalesce(judged.excluded_by_group, 0) as excluded_by_group,
        coalesce(member_stats.members, 0) as members,
        coalesce(member_stats.holdout_members, 0) as holdout_members,
        coalesce(member_stats.members, 0) / nullif(persons.n, 0) as share_of_persons,
        definitions.min_size,
        coalesce(member_stats.members, 0) < definitions.min_size as below_min_size,
        coalesce(member_stats.members, 0) >= definitions.min_size as published,
        previous_run.as_of as previous_as_of,
        case
            when previous_run.as_of is not null
                then coalesce(previous_stats.previous_members, 0)
        end as previous_members,
        coalesce(member_stats.entered, 0) as entered,
        coalesce(previous_stats.exited, 0) as exited,
        round(
            (coalesce(member_stats.members, 0) - previous_stats.previous_members)
            / nullif(previous_stats.previous_members, 0),
            6
        ) as size_change,
        -- the profile of a segment too small to publish could describe a handful of persons
        served_profiles.mean_recency_days,
        served_profiles.mean_frequency_365d,
        served_profiles.mean_monetary_365d,
        served_profiles.mean_web_events_30d,
        served_profiles.mean_propensity_30d
    from definitions
    cross join persons
    left join judged on definitions.segment_id = judged.segment_id
    left join member_stats on definitions.segment_id = member_stats.segment_id
    left join served_profiles on definitions.segment_id = served_profiles.segment_id
    cross join previous_run
    left join previous_stats on definitions.segment_id = previous_stats.segment_id

)

select * from final
