{#
    One row per person with personalization consent who is a targeted (not held out) member of a
    published segment that declares `personalization` in its audience file: the segment that
    wins by the feed priority (1 first, then segment_id), its offer and message template, the
    channels whose feeds carry it, and the template variables it names (the others are null).
    The variables are the documented columns of personalization_variables, read from the graph,
    so a variable added there reaches this feed without a second list.
#}
{%- set variables = [] -%}
{%- if execute -%}
    {%- for node in graph.nodes.values()
        if node.resource_type == 'model' and node.name == 'personalization_variables' -%}
        {%- for column in node.columns if column != 'person_id' -%}
            {%- do variables.append(column) -%}
        {%- endfor -%}
    {%- endfor -%}
{%- endif %}
with

members as (

    select * from {{ ref('segment_members') }}
    where not is_holdout

),

definitions as (

    select * from {{ ref('segment_definitions') }}
    where offer is not null

),

profiles as (

    select
        person_id,
        consent_personalization
    from {{ ref('customer_profiles') }}

),

variables as (

    select * from {{ ref('personalization_variables') }}

),

candidates as (

    select
        members.person_id,
        members.segment_id,
        members.as_of,
        definitions.offer,
        definitions.message_template,
        definitions.template_variables,
        definitions.feed_channels,
        definitions.feed_priority,
        row_number() over (
            partition by members.person_id
            order by definitions.feed_priority asc, members.segment_id asc
        ) as choice
    from members
    inner join definitions on members.segment_id = definitions.segment_id
    inner join profiles on members.person_id = profiles.person_id
    where profiles.consent_personalization

),

final as (

    select
        candidates.person_id,
        candidates.segment_id,
        candidates.offer,
        candidates.message_template,
        candidates.feed_channels,
        {%- for variable in variables %}
            case
                when list_contains(candidates.template_variables, '{{ variable }}')
                    then cast(variables.{{ variable }} as varchar)
            end as {{ variable }},
        {%- endfor %}
        candidates.as_of
    from candidates
    left join variables on candidates.person_id = variables.person_id
    where candidates.choice = 1

)

select * from final
