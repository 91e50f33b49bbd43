with

source as (

    -- events older than the retention window are out of every model
    select * from {{ source('raw', 'pos') }}
    where transacted_at >= {{ retention_start() }}

),

ranked as (

    select
        source.*,
        row_number() over (
            partition by source.transaction_id, coalesce(source.line_number, 1)
            order by source._loaded_at desc, source._file desc, source._row_number desc
        ) as occurrence_from_last
    from source

),

latest as (

    select * from ranked
    where occurrence_from_last = 1

),

cleaned as (

    select
        transaction_id,
        coalesce(line_number, 1) as line_number,
        transacted_at,
        nullif(trim(store_id), '') as store_id,
        clean_identifier(loyalty_card_id) as loyalty_card_id,
        identity_email(receipt_email) as receipt_email,
        clean_identifier(payment_card_token) as payment_card_token,
        nullif(trim(sku), '') as sku,
        nullif(lower(trim(product_category)), '') as product_category,
        quantity,
        unit_price,
        coalesce(is_return, false) as is_return
    from latest

),

final as (

    select
        transaction_id,
        line_number,
        transacted_at,
        store_id,
        loyalty_card_id,
        hmac_key(loyalty_card_id) as loyalty_card_key,
        hmac_key(receipt_email) as receipt_email_key,
        hmac_key(payment_card_token) as payment_card_key,
        sku,
        product_category,
        quantity,
        unit_price,
        is_return,
        quantity * unit_price as line_amount
    from cleaned

)

select * from final
