{#
    Lifetime-value inputs per person as of the run, for the BG/NBD and Gamma-Gamma models
    (ml/clv.py): purchase days in the calibration window (var clv_calibration_days, the days up
    to the end of as_of), as the models count transactions: one a day. frequency = repeat
    purchase days, recency_days = first to last purchase day, age_days = first purchase day to
    the end of as_of, monetary_value = mean revenue of the repeat purchase days (positive ones).
    Persons without a purchase in the window have a row with nulls: they get the models' priors.
#}
with

features as (

    select person_id from {{ ref('customer_features') }}

),

purchase_days as (

    select
        person_id,
        activity_date,
        cast(pos_net_amount + web_revenue as double) as revenue,
        min(activity_date) over (partition by person_id) as first_purchase_date
    from {{ ref('int_customer_days_aggregated') }}
    where
        purchases > 0
        and activity_date <= {{ as_of_date() }}
        and activity_date > {{ as_of_date() }} - {{ var('clv_calibration_days') | int }}

),

per_person as (

    select
        person_id,
        min(first_purchase_date) as first_purchase_date,
        count(*) - 1 as frequency,
        date_diff('day', min(first_purchase_date), max(activity_date)) as recency_days,
        date_diff('day', min(first_purchase_date), {{ as_of_date() }}) + 1 as age_days,
        -- rounded: a parallel average of doubles differs in its last bits from run to run
        round(
            avg(revenue) filter (
                where activity_date > first_purchase_date and revenue > 0
            ),
            6
        ) as monetary_value
    from purchase_days
    group by person_id

),

final as (

    select
        features.person_id,
        per_person.first_purchase_date,
        per_person.frequency,
        per_person.recency_days,
        per_person.age_days,
        per_person.monetary_value,
        {{ as_of_date() }} as as_of
    from features
    left join per_person on features.person_id = per_person.person_id

)

select * from final
