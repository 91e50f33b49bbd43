{{
    config(
        schema='intermediate',
        materialized='incremental',
        incremental_strategy='append',
        full_refresh=false,
        pre_hook="{% if is_incremental() %}delete from {{ this }} where as_of = {{ as_of_date() }}{% endif %}"
    )
}}
{#
    Every segment's members as of each run date, published or not: one row per (segment_id,
    person_id, as_of), appended per run (a re-run of one as_of replaces that date's rows; a full
    refresh keeps the history, which no raw data can rebuild). `entered_on` is the first run
    date of the person's current spell: a spell continues only from the previous run date
    (segment_runs), so an absence on any run ends it. `is_holdout` is drawn when the person
    enters (keyed hash of segment and person against the segment's holdout_share, macro
    holdout_bucket) and kept while they stay. `published`: the segment had at least min_size
    members on that run; only those rows are served (segment_membership_history).
#}
-- depends_on: {{ ref('segment_runs') }}
with

resolved as (

    select * from {{ ref('int_segment_memberships_resolved') }}
    where left_out is null

),

definitions as (

    select * from {{ ref('segment_definitions') }}

),

sizes as (

    select
        segment_id,
        count(*) as members
    from resolved
    group by segment_id

),

previous as (

    {% if is_incremental() %}
        select
            segment_id,
            person_id,
            entered_on,
            is_holdout
        from {{ this }}
        where as_of = (
            select max(as_of) from {{ ref('segment_runs') }}
            where as_of < {{ as_of_date() }}
        )
    {% else %}
        select
            cast(null as varchar) as segment_id,
            cast(null as varchar) as person_id,
            cast(null as date) as entered_on,
            cast(null as boolean) as is_holdout
        where false
    {% endif %}

),

final as (

    select
        resolved.segment_id,
        resolved.person_id,
        {{ as_of_date() }} as as_of,
        coalesce(previous.entered_on, {{ as_of_date() }}) as entered_on,
        coalesce(
            previous.is_holdout,
            holdout_bucket(resolved.segment_id, resolved.person_id)
            < round(definitions.holdout_share * 10000)
        ) as is_holdout,
        sizes.members >= definitions.min_size as published
    from resolved
    inner join definitions on resolved.segment_id = definitions.segment_id
    inner join sizes on resolved.segment_id = sizes.segment_id
    left join previous
        on
            resolved.segment_id = previous.segment_id
            and resolved.person_id = previous.person_id

)

select * from final
