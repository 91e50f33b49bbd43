{#
    Propensity training rows: features as of each training cutoff for persons first seen by then,
    labelled with whether they purchased in the label window after the cutoff day. A cutoff
    before the first day of event data is left out: nothing before it was observed, so its
    features would be empty and its labels all false, which teaches the model nothing true.
#}
with

features as (

    select * from {{ ref('int_customer_features_computed') }}

),

customer_days as (

    select * from {{ ref('int_customer_days_aggregated') }}

),

all_training_cutoffs as (

    {{ feature_cutoffs(training_cutoff_offsets()) }}

),

first_event_day as (

    select min(customer_days.activity_date) as activity_date
    from customer_days

),

training_cutoffs as (

    select all_training_cutoffs.cutoff_date
    from all_training_cutoffs
    inner join first_event_day
        on all_training_cutoffs.cutoff_date >= first_event_day.activity_date

),

examples as (

    select features.*
    from features
    inner join training_cutoffs
        on features.cutoff_date = training_cutoffs.cutoff_date
    where features.first_seen_date <= features.cutoff_date

),

purchase_days as (

    select
        person_id,
        activity_date
    from customer_days
    where purchases > 0

),

purchasers_after_cutoffs as (

    select distinct
        purchase_days.person_id,
        training_cutoffs.cutoff_date
    from purchase_days
    inner join training_cutoffs
        on
            purchase_days.activity_date > training_cutoffs.cutoff_date
            and purchase_days.activity_date
            <= cast(
                {{ dbt.dateadd('day', label_window_days(), 'training_cutoffs.cutoff_date') }}
                as date
            )

),

final as (

    select
        examples.person_id,
        examples.cutoff_date,
        {%- for column in customer_feature_columns() %}
        examples.{{ column }},
        {%- endfor %}
        purchasers_after_cutoffs.person_id is not null as purchased_next_30d
    from examples
    left join purchasers_after_cutoffs
        on
            examples.person_id = purchasers_after_cutoffs.person_id
            and examples.cutoff_date = purchasers_after_cutoffs.cutoff_date

)

select * from final
