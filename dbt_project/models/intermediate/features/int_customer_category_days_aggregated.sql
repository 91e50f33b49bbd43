{# Purchases per person, day and product category (POS non-return lines, web purchase events). #}
with

pos_lines as (

    select * from {{ ref('int_pos_lines_attributed') }}

),

web_events as (

    select * from {{ ref('int_web_events_attributed') }}

),

category_purchases as (

    select
        person_id,
        activity_date,
        product_category,
        line_amount as amount
    from pos_lines
    where not is_return and product_category is not null

    union all

    select
        person_id,
        activity_date,
        product_category,
        coalesce(revenue, 0) as amount
    from web_events
    where event_type = 'purchase' and product_category is not null

),

final as (

    select
        person_id,
        activity_date,
        product_category,
        cast(count(*) as bigint) as purchases,
        cast(sum(amount) as decimal(18, 2)) as amount
    from category_purchases
    group by person_id, activity_date, product_category

)

select * from final
