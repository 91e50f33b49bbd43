{# Person ids: the one definition of how an id is derived from its anchor record node.

   A person's id is 'p_k' followed by 15 hex digits of the keyed hash (hmac_key) of the smallest
   record node of its component (crm:<system>:<id>, pos:<transaction_id> or web:<anonymous_id>),
   salted with the as_of date when that id is already taken. Nobody without the HMAC key can
   compute it from a source key. Ids issued before keying were 'p_' + 16 hex digits of an unkeyed
   md5 of the anchor: the third character ('k', never a hex digit) tells the two apart, and
   warehouse/privacy.py (KEYED_PERSON_ID_PREFIX, LEGACY_PERSON_ID_PATTERN) holds the same rule. #}

{% macro keyed_person_id_prefix() -%}
    {{ return("p_k") }}
{%- endmacro %}

{# The id of a new person anchored on record node `anchor_expr` (salt_expr: a text expression
   mixed in when the unsalted id is taken). #}
{% macro person_id_for_anchor(anchor_expr, salt_expr=none) -%}
    {%- if salt_expr is none -%}
        {%- set value = anchor_expr -%}
    {%- else -%}
        {%- set value = "(" ~ anchor_expr ~ ") || '|' || (" ~ salt_expr ~ ")" -%}
    {%- endif -%}
    '{{ keyed_person_id_prefix() }}' || left({{ hmac_key(value) }}, 15)
{%- endmacro %}

{# True when a person id was derived with the key (false for ids of the unkeyed rule). #}
{% macro is_keyed_person_id(expr) -%}
    (left({{ expr }}, 3) = '{{ keyed_person_id_prefix() }}')
{%- endmacro %}
