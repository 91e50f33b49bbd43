-- How person ids changed in each run: one row per (old id, new id) whose records moved. A
-- `merge` retires the old id into the new one; a `split` moves part of an old id's records to
-- another person; a `rekey` replaces an id issued by the former unkeyed rule (an md5 of a source
-- key, recomputable by anyone) with the keyed id of the same person, once. Ids of the unkeyed
-- rule whose records are all gone from the graph (kept only in person_id_registry) are re-keyed
-- too, from their smallest record node; person_id_registry applies those rows to its own.
-- Incremental: the history of every run (a re-run of one as_of replaces it). This table stays in
-- the warehouse: the serving snapshot withholds every row that names an unkeyed id.
-- The previous registry is read by name (person_id_registry is built after this model).
{{ config(
    materialized='incremental',
    unique_key=['as_of', 'old_person_id', 'new_person_id'],
    incremental_strategy='delete+insert',
) }}
{%- set registry = adapter.get_relation(
    database=this.database, schema='intermediate', identifier='person_id_registry'
) if execute else none %}

with

nodes as (

    select * from {{ ref('int_identity_nodes_resolved') }}

),

previous_assignment as (

    {% if registry is not none -%}
    select record_node, person_id from {{ registry }}
    {%- else -%}
        select
            cast(null as varchar) as record_node,
            cast(null as varchar) as person_id
        where false
    {%- endif %}

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

current_records as (

    select nodes.node_id
    from nodes
    where nodes.is_record

),

unkeyed_without_records as (

    -- unkeyed ids none of whose records is in the graph any more (aged out, not erased)
    select
        previous_assignment.person_id as old_person_id,
        person_id_for_anchor(min(previous_assignment.record_node)) as new_person_id,
        count(*) as records
    from previous_assignment
    left join current_records
        on previous_assignment.record_node = current_records.node_id
    where not is_keyed_person_id(previous_assignment.person_id)
    group by previous_assignment.person_id
    having count(current_records.node_id) = 0

),

spread as (

    select
        old_person_id,
        count(*) as n_new_ids
    from moves
    group by old_person_id

),

final as (

    select
        moves.old_person_id,
        moves.new_person_id,
        case
            when not is_keyed_person_id(moves.old_person_id) then 'rekey'
            when spread.n_new_ids > 1 then 'split'
            else 'merge'
        end as change_type,
        {{ as_of_date() }} as as_of,
        moves.records
    from moves
    inner join spread
        on moves.old_person_id = spread.old_person_id
    where moves.old_person_id <> moves.new_person_id

    union all

    select
        old_person_id,
        new_person_id,
        'rekey' as change_type,
        {{ as_of_date() }} as as_of,
        records
    from unkeyed_without_records

)

select * from final
