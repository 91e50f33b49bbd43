{# The run's reference date; events strictly before as_of_end() (the end of that UTC day) count. #}
{% macro as_of_date() -%}
    {%- set value = var("as_of") | string -%}
    {%- if not modules.re.fullmatch("[0-9]{4}-[0-9]{2}-[0-9]{2}", value) -%}
        {%- do exceptions.raise_compiler_error("var as_of must be YYYY-MM-DD, got: " ~ value) -%}
    {%- endif -%}
    cast('{{ value }}' as date)
{%- endmacro %}

{% macro as_of_end() -%}
    cast({{ dbt.dateadd("day", 1, as_of_date()) }} as timestamp)
{%- endmacro %}

{# Start of the retention window: events before it are out of every model (var retention_days). #}
{% macro retention_start() -%}
    {%- set days = var("retention_days") | int -%}
    {%- if days < 1 -%}
        {%- do exceptions.raise_compiler_error("var retention_days must be positive") -%}
    {%- endif -%}
    cast({{ dbt.dateadd("day", -days, as_of_end()) }} as timestamp)
{%- endmacro %}
