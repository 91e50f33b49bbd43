"""DuckDB connection setup shared by dbt's connections and the Dagster resource.

The only engine-specific pieces the SQL relies on: keyed-hash pads as variables, a phone UDF and
the identity-key macros of warehouse/identity_keys.py.
"""

from __future__ import annotations

import functools

import duckdb
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc
from duckdb.sqltypes import VARCHAR

from warehouse.identity_keys import register_identity_macros

_BLOCK = 64  # SHA-256 block size in bytes


def hmac_pads(key: bytes) -> tuple[bytes, bytes]:
    """Inner and outer HMAC-SHA256 pads for `key` (RFC 2104)."""
    if len(key) > _BLOCK:
        import hashlib

        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


@functools.lru_cache(maxsize=1_000_000)
def _e164(raw: str, region: str) -> str | None:
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# Country codes people write that are not ISO-3166 alpha-2 (ISO reserves UK for GB).
_REGION_ALIASES = {"UK": "GB", "EL": "GR"}


def normalize_phone(raw: str | None, region: str = "US") -> str | None:
    """E.164 form of a phone written in any format, or None when it is not a valid number."""
    if raw is None:
        return None
    region = _REGION_ALIASES.get(region, region)
    raw = raw.strip()
    if not raw:
        return None
    if raw.startswith("00"):
        raw = "+" + raw[2:]
    return _e164(raw, region)


def _normalize_phone_arrow(phones: pa.Array, regions: pa.Array) -> pa.Array:
    # Parse each distinct (phone, region) once: phone columns repeat heavily across records.
    table = pa.table({"p": phones, "r": regions})
    distinct = table.group_by(["p", "r"]).aggregate([])
    keys = distinct.column("p").to_pylist()
    regs = distinct.column("r").to_pylist()
    parsed = pa.array(
        [normalize_phone(p, r or "US") for p, r in zip(keys, regs, strict=True)],
        type=pa.string(),
    )
    index = pc.index_in(
        pc.binary_join_element_wise(pc.fill_null(phones, "\0"), pc.fill_null(regions, ""), "\x1f"),
        value_set=pc.binary_join_element_wise(
            pc.fill_null(distinct.column("p"), "\0"), pc.fill_null(distinct.column("r"), ""), "\x1f"
        ),
    )
    return pc.take(parsed, index)


def configure_connection(
    con: duckdb.DuckDBPyConnection, hmac_key: bytes, phone_region: str = "US"
) -> None:
    """Set the HMAC pads and phone region, register `normalize_phone` and the identity macros."""
    ipad, opad = hmac_pads(hmac_key)
    con.execute("set variable hmac_ipad = ?::blob", [ipad])
    con.execute("set variable hmac_opad = ?::blob", [opad])
    con.execute("set variable phone_region = ?", [phone_region])
    try:
        con.create_function(
            "normalize_phone",
            _normalize_phone_arrow,
            [VARCHAR, VARCHAR],
            VARCHAR,
            type="arrow",
            null_handling="special",
            side_effects=False,
        )
    except duckdb.CatalogException:
        pass  # already registered on this connection
    register_identity_macros(con)
