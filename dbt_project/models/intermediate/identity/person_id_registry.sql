-- The persistent record -> person_id assignment that keeps ids stable across runs: incremental,
-- so a rebuild keeps it (only --full-refresh resets it). Records that no longer appear keep
-- their last row, so a record that comes back finds its person again.
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

final as (

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

)

select * from final
