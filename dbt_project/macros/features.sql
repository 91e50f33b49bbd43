{# Customer features: the cutoffs they are computed at and the columns both feature marts expose. #}

{# Days before as_of of the training cutoffs (ml.propensity_training_examples). #}
{% macro training_cutoff_offsets() -%}
    {{ return([30, 60, 90]) }}
{%- endmacro %}

{# Days after a cutoff in which a purchase makes the propensity label true. #}
{% macro label_window_days() -%}
    {{ return(30) }}
{%- endmacro %}

{# One row per cutoff date, `offsets` days before as_of (default: as_of and the training cutoffs). #}
{% macro feature_cutoffs(offsets=none) -%}
    {%- set offsets = [0] + training_cutoff_offsets() if offsets is none else offsets -%}
    {%- for offset in offsets %}
    {{ 'union all' if not loop.first }}
    select cast({{ dbt.dateadd('day', -offset, as_of_date()) }} as date) as cutoff_date
    {%- endfor %}
{%- endmacro %}

{# Sum of a daily measure over the `days` days ending with the cutoff day (cutoff day included). #}
{% macro sum_last_days(measure, days) -%}
    sum(case when days_before_cutoff < {{ days }} then {{ measure }} else 0 end)
{%- endmacro %}

{# Feature columns shared by marts.customer_features and ml.propensity_training_examples. #}
{% macro customer_feature_columns() -%}
    {{ return([
        'recency_days', 'frequency_365d', 'monetary_365d', 'avg_order_value_365d',
        'purchases_30d', 'purchases_90d', 'return_rate_365d', 'tenure_days',
        'days_since_last_visit',
        'web_events_7d', 'web_events_30d', 'web_events_90d',
        'sessions_7d', 'sessions_30d', 'sessions_90d',
        'email_opens_30d', 'email_clicks_30d', 'searches_30d',
        'product_views_30d', 'cart_adds_30d', 'checkout_starts_30d',
        'product_views_without_purchase_30d', 'cart_adds_without_purchase_30d',
        'share_mobile', 'share_desktop', 'share_tablet', 'share_app',
        'online_share_365d', 'n_categories_365d', 'top_category_365d',
        'home_city', 'home_region', 'home_country', 'home_postcode',
        'exposure_days', 'purchase_rate_30d', 'purchase_rate_90d', 'purchase_rate_365d',
        'purchase_trend_30d', 'purchase_trend_90d', 'mean_purchase_gap_days', 'recency_gap_ratio',
        'days_since_last_product_view', 'days_since_last_cart_add',
        'days_since_last_checkout_start', 'session_rate_365d', 'session_trend_30d',
    ]) }}
{%- endmacro %}
