{# Identity-graph rules of the SQL models. The identity keys themselves (node formats, email and
   phone normalisation, placeholder values, the keyed hash, person ids) are DuckDB macros defined
   once in warehouse/identity_keys.py and registered on every connection. #}

{# Value of expr on the row with the greatest order_expr among rows where expr is not null. #}
{% macro latest_non_null(expr, order_expr) -%}
    arg_max({{ expr }}, {{ order_expr }}) filter (where {{ expr }} is not null)
{%- endmacro %}

{# Weight (log2 odds of one person) of a record -> identifier edge, by identifier type: an
   account id or email names one person most surely; a payment card least. #}
{% macro identity_identifier_weight(identifier_type) -%}
    case {{ identifier_type }}
        when 'user' then 24.0
        when 'email' then 22.0
        when 'phone' then 20.0
        when 'card' then 20.0
        when 'pay' then 16.0
        else 10.0
    end
{%- endmacro %}

{# An always-merge override outweighs any evidence; only a never-merge override stops it. #}
{% macro identity_override_weight() -%}
    1000.0
{%- endmacro %}

{# The value repeated on most of a person's records; ties go to the greatest order_expr. #}
{% macro most_frequent_non_null(expr, frequency_expr, order_expr) -%}
    arg_max({{ expr }}, {{ frequency_expr }} * 1000000 + {{ order_expr }})
        filter (where {{ expr }} is not null)
{%- endmacro %}

{# Survivorship rank of a CRM system for contact data (higher wins): the order of var
   identity_source_priority (first = preferred); systems not listed rank below all listed. #}
{% macro identity_source_priority(source_system) -%}
    {%- set systems = var('identity_source_priority', ['shop_crm', 'loyalty_crm', 'crm']) -%}
    case {{ source_system }}
        {%- for system in systems %}
        when '{{ system | replace("'", "''") }}' then {{ systems | length - loop.index0 }}
        {%- endfor %}
        else 0
    end
{%- endmacro %}
