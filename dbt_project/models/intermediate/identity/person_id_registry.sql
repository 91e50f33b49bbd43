-- The persistent record -> person_id assignment that keeps ids stable across runs: incremental,
-- so a rebuild keeps it (only --full-refresh resets it). Records that no longer appear keep
-- their last row, so a record that comes back finds its person again; when such a row holds an
-- id of the former unkeyed rule, it takes the keyed id person_id_lineage's `rekey` rows give it,
-- so the registry holds keyed ids only.
-- depends_on: {{ ref('person_id_lineage') }}
{{ config(
    materialized='incremental',
    unique_key='record_node',
    incremental_strategy='delete+insert',
) }}

with

nodes as (

    select * from {{ ref('int_identity_nodes_resolved') }}

),

current_assignment as (

    select
        nodes.node_id as record_node,
        nodes.person_id,
        nodes.previous_person_id
    from nodes
    where nodes.is_record

),

current_rows as (

    select
        current_assignment.record_node,
        current_assignment.person_id,
        {% if is_incremental() -%}
        case
            when current_assignment.person_id = registry.person_id then registry.first_assigned_on
            else {{ as_of_date() }}
        end as first_assigned_on,
        {%- else -%}
            {{ as_of_date() }} as first_assigned_on,
        {%- endif %}
        {{ as_of_date() }} as last_seen_on
    from current_assignment
    {% if is_incremental() -%}
    left join {{ this }} as registry
        on current_assignment.record_node = registry.record_node
    {%- endif %}

),

{% if is_incremental() -%}
rekeys as (

    -- each unkeyed id's replacement: the keyed id that took most of its records
    select lineage.old_person_id, lineage.new_person_id
    from {{ ref('person_id_lineage') }} as lineage
    where lineage.change_type = 'rekey'
    qualify row_number() over (
        partition by lineage.old_person_id
        order by lineage.records desc, lineage.new_person_id
    ) = 1

),

absent_rows_rekeyed as (

    -- rows of records not in the graph this run that still hold an unkeyed id
    select
        registry.record_node,
        rekeys.new_person_id as person_id,
        {{ as_of_date() }} as first_assigned_on,
        registry.last_seen_on
    from {{ this }} as registry
    inner join rekeys
        on registry.person_id = rekeys.old_person_id
    left join current_assignment
        on registry.record_node = current_assignment.record_node
    where current_assignment.record_node is null

),
{%- endif %}

final as (

    select * from current_rows
    {% if is_incremental() -%}
    union all
    select * from absent_rows_rekeyed
    {%- endif %}

)

select * from final
