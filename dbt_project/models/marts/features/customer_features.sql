{# Features of every person as of the run's date (ML uses every numeric column but the keys). #}
with

features as (

    select * from {{ ref('int_customer_features_computed') }}

),

final as (

    select
        person_id,
        cutoff_date as as_of,
        {%- for column in customer_feature_columns() %}
        {{ column }}{{ ',' if not loop.last }}
        {%- endfor %}
    from features
    where cutoff_date = {{ as_of_date() }}

)

select * from final
