{#
    How the current members of every two segments overlap: one row per ordered pair that shares
    at least one member, with the share of each segment's members also in the other and the
    Jaccard index.
#}
with

members as (

    select
        segment_id,
        person_id
    from {{ ref('segment_members') }}

),

sizes as (

    select
        segment_id,
        count(*) as members
    from members
    group by segment_id

),

shared as (

    select
        a.segment_id,
        b.segment_id as other_segment_id,
        count(*) as overlap
    from members as a
    inner join members as b
        on
            a.person_id = b.person_id
            and a.segment_id <> b.segment_id
    group by a.segment_id, b.segment_id

),

final as (

    select
        shared.segment_id,
        shared.other_segment_id,
        sizes_a.members,
        sizes_b.members as other_members,
        shared.overlap,
        round(shared.overlap / sizes_a.members, 6) as share_of_members,
        round(
            shared.overlap / (sizes_a.members + sizes_b.members - shared.overlap), 6
        ) as jaccard,
        {{ as_of_date() }} as as_of
    from shared
    inner join sizes as sizes_a on shared.segment_id = sizes_a.segment_id
    inner join sizes as sizes_b on shared.other_segment_id = sizes_b.segment_id

)

select * from final
