{# Engine-specific SQL lives here only: keyed hashes and phone parsing (see warehouse/connection.py). #}

{# HMAC-SHA256 of a text value, hex; the pads are connection variables, never in compiled SQL. #}
{% macro hmac_key(expr) -%}
    sha256(getvariable('hmac_opad') || unhex(sha256(getvariable('hmac_ipad') || encode({{ expr }}))))
{%- endmacro %}

{#
    E.164 phone, or null when the value is not a valid number. A number written without a
    country code is read in `country` (an ISO-3166 alpha-2 expression, e.g. the record's own
    country) when that is a code, else in the configured default region (MICROSEG_PHONE_REGION).
#}
{% macro normalize_phone(expr, country=none) -%}
    {%- if country is none -%}
    normalize_phone({{ expr }}, getvariable('phone_region'))
    {%- else -%}
    normalize_phone(
        {{ expr }},
        case
            when regexp_full_match(upper(trim({{ country }})), '[A-Z]{2}')
                then upper(trim({{ country }}))
            else getvariable('phone_region')
        end
    )
    {%- endif -%}
{%- endmacro %}

{# Trimmed, lower-cased email; null when blank or without the shape of an address. #}
{% macro normalize_email(expr) -%}
    case
        when regexp_full_match(lower(trim({{ expr }})), '[^@\s]+@[^@\s]+\.[^@\s]+')
            then lower(trim({{ expr }}))
    end
{%- endmacro %}
