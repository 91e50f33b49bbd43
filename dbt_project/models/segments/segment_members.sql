{#
    The current members of every published segment (at least min_size members after consent
    and exclusive groups; smaller segments are not published, exported or served: see
    segment_summary.published), holdout members included and flagged. rank 1 = best by the
    segment's rank_by.
#}
with

history as (

    select * from {{ ref('int_segment_memberships_historized') }}
    where as_of = {{ as_of_date() }} and published

),

resolved as (

    select * from {{ ref('int_segment_memberships_resolved') }}
    where left_out is null

),

final as (

    select
        history.segment_id,
        history.person_id,
        resolved.score,
        cast(row_number() over (
            partition by history.segment_id
            order by resolved.sort_key desc nulls last, history.person_id asc
        ) as integer) as rank,
        history.is_holdout,
        history.entered_on,
        history.as_of
    from history
    inner join resolved
        on
            history.segment_id = resolved.segment_id
            and history.person_id = resolved.person_id

)

select * from final
