{# POS lines of identified persons up to the end of the as_of day, with their activity date. #}
with

pos_lines as (

    select * from {{ ref('stg_pos__transaction_lines') }}

),

identity_map as (

    select * from {{ ref('identity_map') }}

),

pos_persons as (

    select
        identity_map.source_key as transaction_id,
        identity_map.person_id
    from identity_map
    where identity_map.source_system = 'pos' and identity_map.person_id is not null

),

final as (

    select
        pos_persons.person_id,
        pos_lines.transaction_id,
        pos_lines.line_number,
        pos_lines.transacted_at,
        cast(pos_lines.transacted_at as date) as activity_date,
        pos_lines.product_category,
        pos_lines.sku,
        pos_lines.is_return,
        -- money as exact decimals: sums of doubles differ in the last bits between runs
        cast(pos_lines.line_amount as decimal(18, 2)) as line_amount
    from pos_lines
    inner join pos_persons
        on pos_lines.transaction_id = pos_persons.transaction_id
    where pos_lines.transacted_at < {{ as_of_end() }}

)

select * from final
