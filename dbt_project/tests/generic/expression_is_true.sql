{# Fails on every row where the expression (prefixed by the column when given) is not true. #}
{% test expression_is_true(model, expression, column_name=None) %}

select *
from {{ model }}
where not coalesce(({{ column_name ~ " " if column_name }}{{ expression }}), false)

{% endtest %}
