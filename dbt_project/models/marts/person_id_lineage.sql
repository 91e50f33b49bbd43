-- How person ids changed in each run: one row per (old id, new id) whose records moved. A
-- `merge` retires the old id into the new one; a `split` moves part of an old id's records to
-- another person. Incremental: the history of every run (a re-run of one as_of replaces it).
{{ config(
    materialized='incremental',
    unique_key=['as_of', 'old_person_id', 'new_person_id'],
    incremental_strategy='delete+insert',
) }}

with

nodes as (

    select * from {{ ref('int_identity_nodes_resolved') }}

),

moves as (

    select
        nodes.previous_person_id as old_person_id,
        nodes.person_id as new_person_id,
        count(*) as records
    from nodes
    where nodes.is_record and nodes.previous_person_id is not null
    group by nodes.previous_person_id, nodes.person_id

),

spread as (

    select old_person_id, count(*) as n_new_ids
    from moves
    group by old_person_id

),

final as (

    select
        moves.old_person_id,
        moves.new_person_id,
        case when spread.n_new_ids > 1 then 'split' else 'merge' end as change_type,
        {{ as_of_date() }} as as_of,
        moves.records
    from moves
    inner join spread
        on moves.old_person_id = spread.old_person_id
    where moves.old_person_id <> moves.new_person_id

)

select * from final
