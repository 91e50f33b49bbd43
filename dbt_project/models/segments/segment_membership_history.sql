{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        full_refresh=false,
        pre_hook="{% if is_incremental() %}delete from {{ this }} where as_of = {{ as_of_date() }}{% endif %}"
    )
}}
{#
    Membership as of each run's date: one row per (segment_id, person_id, as_of), appended per
    run (a re-run of one as_of replaces that date's rows; a full refresh keeps the history, which
    no raw data can rebuild). `entered_on` is the first run date of the person's current spell
    in the segment; a person present on one run date and absent on the next exited between them.
    `is_holdout` is drawn when the person enters (keyed hash of segment and person against the
    segment's holdout_share, macro holdout_bucket) and kept while they stay, so a change of
    share never moves a member in or out of the holdout. Membership as of any date D: the rows
    of the latest as_of on or before D.
#}
with

resolved as (

    select * from {{ ref('int_segment_memberships_resolved') }}
    where left_out is null

),

definitions as (

    select * from {{ ref('segment_definitions') }}

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
            select max(as_of) from {{ this }}
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
        ) as is_holdout
    from resolved
    inner join definitions on resolved.segment_id = definitions.segment_id
    left join previous
        on
            resolved.segment_id = previous.segment_id
            and resolved.person_id = previous.person_id

)

select * from final
