{# Identity-graph rules: junk identifier values and the consent/privacy subject -> node mapping. #}

{# Placeholder values people type instead of an identifier (compared trimmed and lower-cased). #}
{% macro identity_junk_tokens() -%}
    {{ return(["", "-", "0", "n/a", "na", "n.a.", "none", "null", "nil", "unknown", "undefined",
               "test", "xxx", "no", "not available", "notavailable"]) }}
{%- endmacro %}

{# Whole email addresses, and local parts / domains, that never name a person. #}
{% macro identity_junk_emails() -%}
    {{ return(["test@test.com", "null@null.com", "none@none.com", "no@no.com", "a@a.com",
               "test@example.com", "noreply@noreply.com", "email@email.com"]) }}
{%- endmacro %}

{% macro identity_junk_email_local_parts() -%}
    {{ return(["noemail", "no-email", "no_email", "nomail", "no.email", "none", "null", "unknown",
               "noreply", "no-reply", "donotreply", "do-not-reply", "na", "n/a", "test"]) }}
{%- endmacro %}

{% macro identity_junk_email_domains() -%}
    {{ return(["test.com", "null.com", "none.com", "noemail.com", "nomail.com", "invalid"]) }}
{%- endmacro %}

{% macro sql_string_list(values) -%}
    {%- for v in values -%}'{{ v | replace("'", "''") }}'{{ ", " if not loop.last }}{%- endfor -%}
{%- endmacro %}

{# True when a trimmed identifier is blank or a placeholder. #}
{% macro is_junk_token(expr) -%}
    (lower(trim({{ expr }})) in ({{ sql_string_list(identity_junk_tokens()) }}))
{%- endmacro %}

{# True when a normalised email is a placeholder address. #}
{% macro is_junk_email(expr) -%}
    (
        {{ expr }} in ({{ sql_string_list(identity_junk_emails()) }})
        or {{ dbt.split_part(expr, "'@'", 1) }} in ({{ sql_string_list(identity_junk_email_local_parts()) }})
        or {{ dbt.split_part(expr, "'@'", 2) }} in ({{ sql_string_list(identity_junk_email_domains()) }})
    )
{%- endmacro %}

{# True when an E.164 phone's last seven digits are one repeated digit (555-5555, 000-0000). #}
{% macro is_junk_phone(expr) -%}
    (replace(right({{ expr }}, 7), right({{ expr }}, 1), '') = '')
{%- endmacro %}

{# Trimmed identifier, or null when blank or a placeholder. #}
{% macro clean_identifier(expr) -%}
    case when not {{ is_junk_token(expr) }} then trim({{ expr }}) end
{%- endmacro %}

{# Keyed-hash values of the placeholder tokens and emails, one per row (column junk_key). #}
{% macro identity_junk_keys_values() -%}
    {%- set values = [] -%}
    {%- for t in identity_junk_tokens() -%}
        {%- do values.append(t) -%}{%- do values.append(t | upper) -%}{%- do values.append(t | title) -%}
    {%- endfor -%}
    {%- for e in identity_junk_emails() -%}{%- do values.append(e) -%}{%- endfor -%}
    select distinct {{ hmac_key("junk_value") }} as junk_key
    from (
        {%- for v in values | unique %}
        select '{{ v | replace("'", "''") }}' as junk_value{{ " union all" if not loop.last }}
        {%- endfor %}
    ) as junk_values
{%- endmacro %}

{# Identity node of a consent or privacy subject, normalised like the staging of its records. #}
{% macro identity_subject_node(subject_type, subject_id, source_system) -%}
    case lower(trim({{ subject_type }}))
        when 'crm_customer_id' then 'crm:' || coalesce(nullif(trim({{ source_system }}), ''), 'crm')
            || ':' || trim({{ subject_id }})
        when 'email' then 'email:' || {{ hmac_key(normalize_email(subject_id)) }}
        when 'phone' then 'phone:' || {{ hmac_key(normalize_phone(subject_id)) }}
        when 'user_id' then 'user:' || {{ hmac_key("trim(" ~ subject_id ~ ")") }}
        when 'anonymous_id' then 'web:' || trim({{ subject_id }})
        when 'loyalty_card_id' then 'card:' || {{ hmac_key("trim(" ~ subject_id ~ ")") }}
    end
{%- endmacro %}

{# Value of expr on the row with the greatest order_expr among rows where expr is not null. #}
{% macro latest_non_null(expr, order_expr) -%}
    arg_max({{ expr }}, {{ order_expr }}) filter (where {{ expr }} is not null)
{%- endmacro %}

{# Identity node of a record named by (source_system, source_key) as in marts.identity_map. #}
{% macro identity_record_node(source_system, source_key) -%}
    case lower(trim({{ source_system }}))
        when 'pos' then 'pos:' || trim({{ source_key }})
        when 'web' then 'web:' || trim({{ source_key }})
        else 'crm:' || trim({{ source_system }}) || ':' || trim({{ source_key }})
    end
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
