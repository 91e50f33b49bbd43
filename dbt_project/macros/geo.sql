{# A postcode as profiles and the enrichment source store it, so the two join on (country,
   postcode): upper-cased, whitespace runs collapsed to one space and trimmed, null when empty.
   Where the country writes one inner space before a three-character inward code (GB and the
   Crown dependencies GG, JE, IM; CA) and the value is such a postcode, the space is put there:
   'sw1a1aa ' and 'SW1A  1AA' both become 'SW1A 1AA' for GB. A US ZIP ('02134', '10001-1234')
   keeps its form. `country` is the row's country as delivered (any case, untrimmed).
   The one definition: stg_crm__customers (and so marts.customer_profiles) and
   stg_enrichment__postcodes call it; DuckDB-specific (regexp_replace with the 'g' flag,
   regexp_matches), like the other engine-specific pieces kept in one macro. #}
{% macro normalize_postcode(postcode, country) -%}
    {%- set compact = "regexp_replace(upper(" ~ postcode ~ "), '\\s+', '', 'g')" -%}
    {%- set country_code = "upper(trim(" ~ country ~ "))" -%}
    case
        when
            (
                {{ country_code }} in ('GB', 'GG', 'JE', 'IM')
                and regexp_matches({{ compact }}, '^[A-Z]{1,2}[0-9][A-Z0-9]?[0-9][A-Z]{2}$')
            )
            or (
                {{ country_code }} = 'CA'
                and regexp_matches({{ compact }}, '^[A-Z][0-9][A-Z][0-9][A-Z][0-9]$')
            )
            then
                left({{ compact }}, length({{ compact }}) - 3)
                || ' ' || right({{ compact }}, 3)
        else nullif(trim(regexp_replace(upper({{ postcode }}), '\s+', ' ', 'g')), '')
    end
{%- endmacro %}
