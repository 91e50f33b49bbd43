{#
    The SQL compiled from the audience files (warehouse/audiences.py `compile_audiences`), with
    its relations filled in. The compiler writes it to raw.audience_sql (one row per part) beside
    the condition rows it reads as data (raw.audience_conditions): its text holds identifiers
    checked against the attribute catalogue, node numbers and operators, never a value from a
    file. The refs below are taken at parse time, so dbt orders the models that use it.
#}
{% macro audience_sql(part) -%}
    {%- set attributes = ref('segment_attributes') -%}
    {%- set events = ref('segment_events') -%}
    {%- set conditions = source('audiences', 'audience_conditions') -%}
    {%- set compiled = source('audiences', 'audience_sql') -%}
    {%- if not execute -%}
        select cast(null as varchar) as person_id
    {%- else -%}
        {%- set rows = run_query(
            "select sql from " ~ compiled ~ " where part = '" ~ part ~ "'"
        ).rows -%}
        {%- if rows | length != 1 -%}
            {%- do exceptions.raise_compiler_error(
                "raw.audience_sql has no part '" ~ part ~ "': materialise the audience files first"
            ) -%}
        {%- endif -%}
        {{ rows[0][0]
            | replace('__ATTRIBUTES__', attributes | string)
            | replace('__EVENTS__', events | string)
            | replace('__CONDITIONS__', conditions | string)
            | replace('__AS_OF__', as_of_date()) }}
    {%- endif -%}
{%- endmacro %}

{#
    The discount a template offers by value tier (personalization_variables): the most valuable
    need the least incentive; a person without a value estimate gets the introductory level.
#}
{% macro discount_for_tier(tier) -%}
    case {{ tier }}
        when 'gold' then 0.05
        when 'silver' then 0.10
        when 'bronze' then 0.15
        else 0.20
    end
{%- endmacro %}
