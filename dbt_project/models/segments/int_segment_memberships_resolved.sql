{{ config(schema='intermediate') }}
{#
    The members of each segment as of the run: persons meeting its condition who consented to
    its purpose, then, within an exclusive group, only the segment of highest priority (lowest
    number, then segment_id) each person qualifies for among the segments large enough to
    publish (at least min_size consented persons): a segment too small to publish takes nobody
    from the others of its group. Also the persons left out and why (`left_out`: no_consent,
    group), for the summary.
#}
with

matches as (

    select * from {{ ref('int_segment_matches_evaluated') }}

),

definitions as (

    select * from {{ ref('segment_definitions') }}

),

consents as (

    -- one row per person and purpose: consent_<purpose> columns, whatever the purposes are
    unpivot (
        select
            person_id,
            columns('^consent_')
        from {{ ref('customer_profiles') }}
    )
    on columns('^consent_')
    into name consent_column value has_consent

),

judged as (

    select
        matches.segment_id,
        matches.person_id,
        matches.score,
        matches.sort_key,
        definitions.segment_group,
        definitions.priority,
        coalesce(consents.has_consent, false) as consented
    from matches
    inner join definitions on matches.segment_id = definitions.segment_id
    left join consents
        on
            matches.person_id = consents.person_id
            and consents.consent_column = 'consent_' || definitions.purpose

),

consented_sizes as (

    select
        judged.segment_id,
        count(*) filter (where judged.consented) >= max(definitions.min_size) as can_publish
    from judged
    inner join definitions on judged.segment_id = definitions.segment_id
    group by judged.segment_id

),

ranked as (

    select
        judged.*,
        case
            when judged.segment_group is null or not judged.consented then 1
            else row_number() over (
                partition by judged.segment_group, judged.person_id, judged.consented
                order by
                    consented_sizes.can_publish desc, judged.priority asc, judged.segment_id asc
            )
        end as group_rank
    from judged
    inner join consented_sizes on judged.segment_id = consented_sizes.segment_id

),

final as (

    select
        segment_id,
        person_id,
        score,
        sort_key,
        case
            when not consented then 'no_consent'
            when group_rank > 1 then 'group'
        end as left_out
    from ranked

)

select * from final
