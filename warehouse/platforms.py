"""Ad-platform upload formats: each platform's normalisation, written once as DuckDB macros.

Google Customer Match and Meta Custom Audiences match on plain SHA-256 of normalised contact
data; these macros are the only place such unkeyed hashes are computed, and only export files
receive them. Emails and phones reuse the identity macros (`identity_email`, `identity_phone`:
warehouse/identity_keys.py and warehouse/connection.py), so a platform sees the same address and
E.164 number the identity graph keys. The rules follow the platforms' published guidelines
(docs/activation.md cites them); tests/unit/test_platform_files.py holds the golden vectors.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from warehouse.connection import _REGION_ALIASES

# US states and DC by name (letters only, lower case) -> USPS/ANSI two-letter code.
US_STATES = {
    "alabama": "al", "alaska": "ak", "arizona": "az", "arkansas": "ar", "california": "ca",
    "colorado": "co", "connecticut": "ct", "delaware": "de", "districtofcolumbia": "dc",
    "florida": "fl", "georgia": "ga", "hawaii": "hi", "idaho": "id", "illinois": "il",
    "indiana": "in", "iowa": "ia", "kansas": "ks", "kentucky": "ky", "louisiana": "la",
    "maine": "me", "maryland": "md", "massachusetts": "ma", "michigan": "mi", "minnesota": "mn",
    "mississippi": "ms", "missouri": "mo", "montana": "mt", "nebraska": "ne", "nevada": "nv",
    "newhampshire": "nh", "newjersey": "nj", "newmexico": "nm", "newyork": "ny",
    "northcarolina": "nc", "northdakota": "nd", "ohio": "oh", "oklahoma": "ok", "oregon": "or",
    "pennsylvania": "pa", "rhodeisland": "ri", "southcarolina": "sc", "southdakota": "sd",
    "tennessee": "tn", "texas": "tx", "utah": "ut", "vermont": "vt", "virginia": "va",
    "washington": "wa", "westvirginia": "wv", "wisconsin": "wi", "wyoming": "wy",
}  # fmt: skip


def _literal_list(values) -> str:
    # Product vocabulary only (constants of this module), never user values.
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def _country_aliases() -> str:
    whens = " ".join(f"when '{alias}' then '{iso}'" for alias, iso in _REGION_ALIASES.items())
    return f"case upper(trim(v)) {whens} else upper(trim(v)) end"


# name -> (parameters, body). Order matters: a macro may call only those defined before it.
PLATFORM_MACROS: dict[str, tuple[str, str]] = {
    # A value that already is a SHA-256 hex digest: passed through, never hashed twice.
    "platform_is_sha256": ("v", "regexp_full_match(lower(trim(v)), '[0-9a-f]{64}')"),
    # Lower-case SHA-256 hex of a normalised value; null when there is nothing to hash.
    "platform_sha256": ("v", "case when v is not null and v <> '' then sha256(v) end"),
    # The hashed form of a raw value: passed through when already hashed, else the hash of its
    # normalised form (null when the value does not normalise: dropped, and counted).
    "platform_hash": (
        "raw, normalised",
        "case when coalesce(platform_is_sha256(raw), false) then lower(trim(raw)) "
        "else platform_sha256(normalised) end",
    ),
    # ISO-3166 alpha-2 in upper case (the aliases people write mapped: UK -> GB, EL -> GR).
    "platform_country": (
        "v",
        f"case when regexp_full_match(upper(trim(v)), '[A-Z]{{2}}') then {_country_aliases()} end",
    ),
    # Google: names trimmed and lower-cased (NFC first, so a decomposed accent hashes the same).
    "google_name": ("v", "nullif(lower(trim(nfc_normalize(v))), '')"),
    # Google: postcode in clear, as the profile holds it (already normalised by staging).
    "google_zip": ("v", "nullif(trim(v), '')"),
    # Meta: lower-case letters only, accents and other scripts kept (UTF-8): FN, LN, CT.
    "meta_letters": (
        "v",
        r"nullif(regexp_replace(lower(nfc_normalize(v)), '[^\p{L}]', '', 'g'), '')",
    ),
    # Meta: E.164 digits with country code, without '+' (no leading zero can remain).
    "meta_phone": ("v, country", "ltrim(identity_phone(v, country), '+')"),
    # Meta: US states as their two-letter code (full names mapped); elsewhere letters only.
    "meta_state": (
        "state, country",
        "case when regexp_full_match(meta_letters(state), '[a-z]{2}') then meta_letters(state) "
        "when platform_country(country) = 'US' then "
        f"map({_literal_list(US_STATES)}, {_literal_list(US_STATES.values())})"
        "[meta_letters(state)] "
        "else meta_letters(state) end",
    ),
    # Meta: lower case without spaces or dashes; US: the first five digits; GB: area, district
    # and sector (the full postcode minus its last two letters).
    "meta_zip": (
        "postcode, country",
        "case "
        "when platform_country(country) = 'US' then "
        r"case when regexp_matches(regexp_replace(lower(postcode), '[\s-]', '', 'g'), "
        "'^[0-9]{5}([0-9]{4})?$') "
        r"then left(regexp_replace(lower(postcode), '[\s-]', '', 'g'), 5) end "
        "when platform_country(country) = 'GB' "
        r"and regexp_full_match(regexp_replace(lower(postcode), '[\s-]', '', 'g'), "
        "'[a-z]{1,2}[0-9][a-z0-9]?[0-9][a-z]{2}') "
        r"then left(regexp_replace(lower(postcode), '[\s-]', '', 'g'), "
        r"length(regexp_replace(lower(postcode), '[\s-]', '', 'g')) - 2) "
        r"else nullif(regexp_replace(lower(postcode), '[\s-]', '', 'g'), '') end",
    ),
    "meta_country": ("v", "lower(platform_country(v))"),
    "meta_gender": ("v", "case when lower(trim(v)) in ('f', 'm') then lower(trim(v)) end"),
    # Meta: date of birth as YYYY, MM and DD (years from 1900 on).
    "meta_dob": (
        "d, part",
        "case when year(d) >= 1900 and d <= current_date then strftime(d, part) end",
    ),
}


def register_platform_macros(con: duckdb.DuckDBPyConnection) -> None:
    """Create (or replace) the platform macros on a connection configured by
    `warehouse.connection.configure_connection` (they call the identity macros)."""
    for name, (params, body) in PLATFORM_MACROS.items():
        con.execute(f"create or replace temp macro {name}({params}) as ({body})")


@dataclass(frozen=True)
class Column:
    header: str
    sql: str  # over the profile, alias p
    source: str | None  # the profile column it comes from (for invalid counts)
    hashed: bool = True


@dataclass(frozen=True)
class Platform:
    name: str
    file_format: str  # csv or parquet
    columns: tuple[Column, ...]
    # A row the platform can match: SQL over the output columns (quoted headers).
    matchable: str
    # Columns that identify a row across exports (for adds and removes).
    key: tuple[str, ...]
    description: str

    @property
    def full_file(self) -> str:
        return f"full.{self.file_format}"

    def delta_file(self, kind: str) -> str:
        return f"{kind}.{self.file_format}"

    @property
    def headers(self) -> list[str]:
        return [c.header for c in self.columns]


def _q(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


_EMAIL = "platform_hash(p.email, identity_email(p.email))"

GOOGLE = Platform(
    name="google",
    file_format="csv",
    columns=(
        Column("Email", _EMAIL, "email"),
        Column("Phone", "platform_hash(p.phone, identity_phone(p.phone, p.country))", "phone"),
        Column(
            "First Name", "platform_hash(p.first_name, google_name(p.first_name))", "first_name"
        ),
        Column("Last Name", "platform_hash(p.last_name, google_name(p.last_name))", "last_name"),
        Column("Country", "platform_country(p.country)", "country", hashed=False),
        Column("Zip", "google_zip(p.postcode)", "postcode", hashed=False),
    ),
    matchable='"Email" is not null or "Phone" is not null or ("First Name" is not null '
    'and "Last Name" is not null and "Country" is not null and "Zip" is not null)',
    key=("Email", "Phone", "First Name", "Last Name", "Country", "Zip"),
    description="Google Customer Match: SHA-256 hex of the trimmed lower-case email, of the E.164 "
    "phone (with '+') and of the trimmed lower-case first and last name; country (ISO-3166 "
    "alpha-2) and postcode in clear",
)

META = Platform(
    name="meta",
    file_format="csv",
    columns=(
        Column("EMAIL", _EMAIL, "email"),
        Column("PHONE", "platform_hash(p.phone, meta_phone(p.phone, p.country))", "phone"),
        Column("FN", "platform_hash(p.first_name, meta_letters(p.first_name))", "first_name"),
        Column("LN", "platform_hash(p.last_name, meta_letters(p.last_name))", "last_name"),
        Column("CT", "platform_hash(p.city, meta_letters(p.city))", "city"),
        Column("ST", "platform_hash(p.state, meta_state(p.state, p.country))", "state"),
        Column("ZIP", "platform_hash(p.postcode, meta_zip(p.postcode, p.country))", "postcode"),
        Column("COUNTRY", "platform_hash(p.country, meta_country(p.country))", "country"),
        Column("DOBY", "platform_sha256(meta_dob(p.date_of_birth, '%Y'))", "date_of_birth"),
        Column("DOBM", "platform_sha256(meta_dob(p.date_of_birth, '%m'))", "date_of_birth"),
        Column("DOBD", "platform_sha256(meta_dob(p.date_of_birth, '%d'))", "date_of_birth"),
        Column("GEN", "platform_hash(p.gender, meta_gender(p.gender))", "gender"),
    ),
    matchable='"EMAIL" is not null or "PHONE" is not null or ("FN" is not null '
    'and "LN" is not null and "COUNTRY" is not null and "ZIP" is not null)',
    key=("EMAIL", "PHONE", "FN", "LN", "CT", "ST", "ZIP", "COUNTRY", "DOBY", "DOBM", "DOBD", "GEN"),
    description="Meta Custom Audiences: every column SHA-256 hex of Meta's normalisation "
    "(email trimmed lower case; phone E.164 digits without '+'; names and city lower-case "
    "letters only; US state two-letter code; zip lower case without spaces or dashes, US five "
    "digits, GB sector; country alpha-2 lower case; birth year, month, day; gender m/f)",
)

OWN_CHANNELS = Platform(
    name="parquet",
    file_format="parquet",
    columns=(
        Column("person_id", "m.person_id", None, hashed=False),
        Column("rank", "m.rank", None, hashed=False),
        Column("score", "round(m.score, 6)", None, hashed=False),
    ),
    matchable="true",
    key=("person_id",),
    description="Our own channels: person_id with rank (1 = best) and score",
)

PLATFORMS = {p.name: p for p in (GOOGLE, META, OWN_CHANNELS)}

# Which platforms a segment's consent purpose releases it to.
PLATFORMS_BY_PURPOSE = {
    "ad_targeting": ("google", "meta"),
    "third_party_sharing": ("google", "meta"),
    "personalization": ("parquet",),
}


def select_sql(platform: Platform) -> str:
    """SQL of the platform's columns over `m` (members: person_id, rank, score) joined to
    `p` (marts.customer_profiles)."""
    return ", ".join(f"{c.sql} as {_q(c.header)}" for c in platform.columns)


def csv_columns_sql(platform: Platform) -> str:
    """The `columns` argument of read_csv for the platform's files: every column as text."""
    return "{" + ", ".join(f"'{c.header}': 'VARCHAR'" for c in platform.columns) + "}"


def quoted(headers) -> str:
    return ", ".join(_q(h) for h in headers)
