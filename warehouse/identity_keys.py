"""The one definition of the identity keys, registered as DuckDB macros on every connection.

dbt models (staging, identity graph, consent and privacy subjects), erasure and suppression, the
serving snapshot and the person-id rule all call these macros by name; none of them spells a key
format, a normalisation or the keyed hash in its own SQL. `configure_connection` registers them
(as temporary macros: they live with the connection, like the HMAC pads they read).

Graph nodes:
- records: `crm:<source_system>:<crm_customer_id>`, `pos:<transaction_id>`, `web:<anonymous_id>`;
- identifiers: `<type>:<keyed hash of the normalised value>` with type email, phone, card, user
  (web account id) or pay (payment-card token);
- suppression of an erased record: `record:<keyed hash of its record node>`.
Person ids: 'p_k' + 15 hex digits of the keyed hash of the person's anchor record node.
"""

from __future__ import annotations

import duckdb

# Placeholder values people type instead of an identifier (compared trimmed and lower-cased).
JUNK_TOKENS = (
    "", "-", "0", "n/a", "na", "n.a.", "none", "null", "nil", "unknown", "undefined", "test",
    "xxx", "no", "not available", "notavailable",
)  # fmt: skip
# Whole email addresses, and local parts / domains, that never name a person.
JUNK_EMAILS = (
    "test@test.com", "null@null.com", "none@none.com", "no@no.com", "a@a.com",
    "test@example.com", "noreply@noreply.com", "email@email.com",
)  # fmt: skip
JUNK_EMAIL_LOCAL_PARTS = (
    "noemail", "no-email", "no_email", "nomail", "no.email", "none", "null", "unknown",
    "noreply", "no-reply", "donotreply", "do-not-reply", "na", "n/a", "test",
)  # fmt: skip
JUNK_EMAIL_DOMAINS = ("test.com", "null.com", "none.com", "noemail.com", "nomail.com", "invalid")

KEYED_PERSON_ID_PREFIX = "p_k"


def _literal_list(values: tuple[str, ...]) -> str:
    # Product vocabulary only (constants of this module), never user values.
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def _junk_values() -> tuple[str, ...]:
    """Placeholder tokens as people write them (lower, upper, title case) and junk emails."""
    values = [v for t in JUNK_TOKENS for v in (t, t.upper(), t.title())] + list(JUNK_EMAILS)
    return tuple(dict.fromkeys(values))


# name -> (parameters, body). Order matters: a macro may call only those defined before it.
SCALAR_MACROS: dict[str, tuple[str, str]] = {
    # HMAC-SHA256 (RFC 2104) of a text value, hex; the pads are connection variables.
    "hmac_key": (
        "v",
        "sha256(getvariable('hmac_opad') || unhex(sha256(getvariable('hmac_ipad') || encode(v))))",
    ),
    # Trimmed, lower-cased email; null when blank or without the shape of an address.
    "normalize_email": (
        "v",
        r"case when regexp_full_match(lower(trim(v)), '[^@\s]+@[^@\s]+\.[^@\s]+') "
        "then lower(trim(v)) end",
    ),
    "is_junk_token": ("v", f"lower(trim(v)) in {_literal_list(JUNK_TOKENS)}"),
    # Trimmed identifier, or null when blank or a placeholder.
    "clean_identifier": ("v", "case when not is_junk_token(v) then trim(v) end"),
    # True when a normalised email is a placeholder address.
    "is_junk_email": (
        "e",
        f"e in {_literal_list(JUNK_EMAILS)} "
        f"or split_part(e, '@', 1) in {_literal_list(JUNK_EMAIL_LOCAL_PARTS)} "
        f"or split_part(e, '@', 2) in {_literal_list(JUNK_EMAIL_DOMAINS)}",
    ),
    # True when an E.164 phone's last seven digits are one repeated digit (555-5555, 000-0000).
    "is_junk_phone": ("p", "replace(right(p, 7), right(p, 1), '') = ''"),
    # The region a phone without country code is read in: the record's ISO-3166 alpha-2
    # country when it is one, else the configured default (MICROSEG_PHONE_REGION).
    "phone_region_of": (
        "country",
        "case when regexp_full_match(upper(trim(country)), '[A-Z]{2}') then upper(trim(country)) "
        "else getvariable('phone_region') end",
    ),
    # Identifier values as the graph keys them: normalised, placeholders removed.
    "identity_email": (
        "v",
        "case when not coalesce(is_junk_email(normalize_email(v)), false) "
        "then normalize_email(v) end",
    ),
    "identity_phone": (
        "v, country",
        "case when not coalesce(is_junk_phone(normalize_phone(v, phone_region_of(country))), "
        "false) then normalize_phone(v, phone_region_of(country)) end",
    ),
    # Record nodes.
    "crm_record_node": (
        "source_system, crm_customer_id",
        "'crm:' || coalesce(nullif(trim(source_system), ''), 'crm') || ':' "
        "|| trim(crm_customer_id)",
    ),
    "pos_record_node": ("transaction_id", "'pos:' || transaction_id"),
    "web_record_node": ("anonymous_id", "'web:' || anonymous_id"),
    # The record node of a row named by (source_system, source_key) as marts.identity_map has it.
    "source_record_node": (
        "source_system, source_key",
        "case lower(trim(source_system)) when 'pos' then pos_record_node(trim(source_key)) "
        "when 'web' then web_record_node(trim(source_key)) "
        "else crm_record_node(source_system, source_key) end",
    ),
    # An identifier node from its type and a normalised value (null when the value is null).
    "identifier_node": ("identifier_type, v", "identifier_type || ':' || hmac_key(v)"),
    # Suppression key of an erased record (the record node itself is never stored in clear).
    "record_suppression_key": ("record_node", "'record:' || hmac_key(record_node)"),
    # Graph node of a consent or privacy subject, normalised like the staging of its records.
    "identity_subject_node": (
        "subject_type, subject_id, source_system",
        "case lower(trim(subject_type)) "
        "when 'crm_customer_id' then crm_record_node(source_system, subject_id) "
        "when 'email' then identifier_node('email', normalize_email(subject_id)) "
        "when 'phone' then identifier_node('phone', "
        "normalize_phone(subject_id, getvariable('phone_region'))) "
        "when 'user_id' then identifier_node('user', trim(subject_id)) "
        "when 'anonymous_id' then web_record_node(trim(subject_id)) "
        "when 'loyalty_card_id' then identifier_node('card', trim(subject_id)) end",
    ),
    # A new person's id from its anchor record node; `salt` (a text) is mixed in when the
    # unsalted id is already taken.
    "person_id_for_anchor": (
        "anchor, salt := null",
        f"'{KEYED_PERSON_ID_PREFIX}' || left(hmac_key(case when salt is null then anchor "
        "else anchor || '|' || salt end), 15)",
    ),
    # A person's holdout bucket in a segment, 0..9999: a keyed hash, so nobody without the key
    # can tell (or steer) who is held out, and stable across runs, processes and engines.
    "holdout_bucket": (
        "segment_id, person_id",
        "cast(('0x' || left(hmac_key('holdout|' || segment_id || '|' || person_id), 8)) as bigint)"
        " % 10000",
    ),
    # True when a person id was derived with the key (false for ids of the former unkeyed rule).
    "is_keyed_person_id": (
        "person_id",
        f"left(person_id, {len(KEYED_PERSON_ID_PREFIX)}) = '{KEYED_PERSON_ID_PREFIX}'",
    ),
}

TABLE_MACROS: dict[str, tuple[str, str]] = {
    # Keyed hashes of the placeholder tokens and emails (column junk_key), one per row.
    "identity_junk_keys": (
        "",
        f"select distinct hmac_key(v) as junk_key from unnest({_literal_list(_junk_values())}) "
        "as junk(v)",
    ),
}


def register_identity_macros(con: duckdb.DuckDBPyConnection) -> None:
    """Create (or replace) the identity-key macros on this connection or cursor."""
    for name, (params, body) in SCALAR_MACROS.items():
        con.execute(f"create or replace temp macro {name}({params}) as ({body})")
    for name, (params, body) in TABLE_MACROS.items():
        con.execute(f"create or replace temp macro {name}({params}) as table {body}")
