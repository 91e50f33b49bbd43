"""The CRM records as Splink reads them: `prepare_input` normalises names (nicknames), birth
dates, addresses (street abbreviations) and contact data of `staging.stg_crm__customers` into
`<scratch>.match_input`; plus the SQL identifier checks the package shares."""

from __future__ import annotations

import duckdb

# Bump when the input normalisation changes: a stored model is then retrained.
NORMALISATION_VERSION = "3"
SCRATCH_SCHEMA = "identity_scratch"
SOURCE_TABLE = "staging.stg_crm__customers"

# Common English given-name variants: canonical -> short forms. A nickname may stand for several.
NICKNAMES: dict[str, tuple[str, ...]] = {
    "abigail": ("abby", "gail"),
    "alexander": ("alex", "al", "sasha", "xander"),
    "alexandra": ("alex", "sandra", "sasha", "lexi"),
    "alfred": ("alf", "fred", "freddie"),
    "andrew": ("andy", "drew"),
    "anthony": ("tony", "ant"),
    "barbara": ("barb", "babs"),
    "benjamin": ("ben", "benny", "benji"),
    "catherine": ("cathy", "kate", "katie", "cat"),
    "charles": ("charlie", "chuck", "chas"),
    "charlotte": ("charlie", "lottie"),
    "christine": ("chris", "chrissy", "tina"),
    "christopher": ("chris", "kit", "topher"),
    "daniel": ("dan", "danny"),
    "david": ("dave", "davey"),
    "deborah": ("debbie", "deb", "debby"),
    "donald": ("don", "donnie"),
    "dorothy": ("dot", "dottie", "dolly"),
    "edward": ("ed", "eddie", "ted", "ned"),
    "elizabeth": ("liz", "beth", "betty", "eliza", "lizzie", "libby", "betsy"),
    "emily": ("em", "emmy"),
    "frances": ("fran", "frankie"),
    "francis": ("frank", "frankie"),
    "frederick": ("fred", "freddie"),
    "gregory": ("greg",),
    "harold": ("harry", "hal"),
    "henry": ("harry", "hank", "hal"),
    "isabella": ("bella", "izzy", "isabel"),
    "jacob": ("jake",),
    "james": ("jim", "jimmy", "jamie"),
    "jennifer": ("jen", "jenny", "jenn"),
    "jessica": ("jess", "jessie"),
    "john": ("jack", "johnny", "jon"),
    "jonathan": ("jon", "jonny"),
    "joseph": ("joe", "joey"),
    "jeffrey": ("jeff",),
    "joshua": ("josh",),
    "katherine": ("kate", "kathy", "katie", "kat", "kay"),
    "kathleen": ("kathy", "kate", "kay"),
    "kenneth": ("ken", "kenny"),
    "kimberly": ("kim", "kimmy"),
    "lawrence": ("larry",),
    "margaret": ("peggy", "maggie", "meg", "marge", "margie", "greta"),
    "matthew": ("matt", "matty"),
    "michael": ("mike", "mikey", "mick", "mickey"),
    "nicholas": ("nick", "nicky", "nico"),
    "pamela": ("pam",),
    "patricia": ("pat", "patty", "tricia", "trish"),
    "patrick": ("pat", "paddy"),
    "peter": ("pete",),
    "philip": ("phil",),
    "rebecca": ("becky", "becca", "beck"),
    "richard": ("rick", "dick", "rich", "richie", "ricky"),
    "robert": ("bob", "rob", "bobby", "robbie", "bert"),
    "ronald": ("ron", "ronnie"),
    "samantha": ("sam", "sammy"),
    "samuel": ("sam", "sammy"),
    "stephen": ("steve", "stevie"),
    "steven": ("steve", "stevie"),
    "susan": ("sue", "susie", "suzy"),
    "theodore": ("ted", "teddy", "theo"),
    "thomas": ("tom", "tommy"),
    "timothy": ("tim", "timmy"),
    "victoria": ("vicky", "vickie", "tori"),
    "william": ("bill", "will", "billy", "willie", "liam"),
    "zachary": ("zach", "zack"),
}

# Street words written out or abbreviated: compared in their short form.
STREET_ABBREVIATIONS: dict[str, str] = {
    "street": "st",
    "avenue": "ave",
    "road": "rd",
    "boulevard": "blvd",
    "lane": "ln",
    "drive": "dr",
    "court": "ct",
    "place": "pl",
    "square": "sq",
    "terrace": "ter",
    "highway": "hwy",
    "parkway": "pkwy",
    "north": "n",
    "south": "s",
    "east": "e",
    "west": "w",
    "apartment": "apt",
    "suite": "ste",
}


def _nickname_rows() -> list[tuple[str, str]]:
    rows = {(name, name) for name in NICKNAMES}
    for canonical, shorts in NICKNAMES.items():
        rows.update((short, canonical) for short in shorts)
    return sorted(rows)


def prepare_input(
    con: duckdb.DuckDBPyConnection,
    source_table: str = SOURCE_TABLE,
    scratch_schema: str = SCRATCH_SCHEMA,
) -> int:
    """Write `<scratch>.match_input` (one normalised row per CRM record); return its row count.

    `source_table` and `scratch_schema` are identifiers chosen by code, never user values.
    """
    _check_identifier(source_table)
    _check_identifier(scratch_schema)
    con.execute(f"create schema if not exists {scratch_schema}")
    con.execute(
        f"create or replace table {scratch_schema}.nicknames (name varchar, canonical varchar)"
    )
    con.executemany(f"insert into {scratch_schema}.nicknames values (?, ?)", _nickname_rows())
    con.execute(
        f"create or replace table {scratch_schema}.street_words (word varchar, short varchar)"
    )
    con.executemany(
        f"insert into {scratch_schema}.street_words values (?, ?)",
        sorted(STREET_ABBREVIATIONS.items()),
    )
    con.execute(
        f"""
        create or replace table {scratch_schema}.match_input as
        with
        source as (
            select
                record_node,
                nullif(regexp_replace(lower(strip_accents(first_name)), '[^a-z]', '', 'g'), '')
                    as first_name,
                nullif(regexp_replace(lower(strip_accents(last_name)), '[^a-z]', '', 'g'), '')
                    as last_name,
                date_of_birth as dob,
                nullif(trim(regexp_replace(lower(street_address), '[^a-z0-9 ]', ' ', 'g')), '')
                    as street_text,
                nullif(regexp_replace(upper(postcode), '[^A-Z0-9]', '', 'g'), '') as postcode,
                nullif(regexp_replace(lower(city), '[^a-z]', '', 'g'), '') as city,
                nullif(regexp_replace(lower(state), '[^a-z]', '', 'g'), '') as state,
                email,
                phone_e164 as phone
            from {source_table}
        ),
        street_tokens as (
            -- abbreviate each word of the street (avenue -> ave) so spellings compare equal
            select
                source.record_node,
                string_agg(coalesce(street_words.short, token.word), ' ' order by token.pos)
                    as street_address
            from source,
                unnest(string_split(regexp_replace(source.street_text, ' +', ' ', 'g'), ' '))
                    with ordinality as token(word, pos)
            left join {scratch_schema}.street_words
                on token.word = street_words.word
            where source.street_text is not null
            group by source.record_node
        ),
        first_variants as (
            select source.record_node, list_sort(list_distinct(list(nicknames.canonical)))
                as canonicals
            from source
            inner join {scratch_schema}.nicknames
                on source.first_name = nicknames.name
            group by source.record_node
        )
        select
            source.record_node,
            source.first_name,
            source.last_name,
            -- the name plus every full name it may be short for
            list_distinct(list_concat([source.first_name], coalesce(first_variants.canonicals,
                [])))
                as first_names,
            coalesce(first_variants.canonicals[1], source.first_name) as first_key,
            left(source.first_name, 1) as first_initial,
            source.dob,
            strftime(source.dob, '%Y-%m-%d') as dob_text,
            street_tokens.street_address,
            nullif(regexp_extract(street_tokens.street_address, '^[0-9]+[a-z]?'), '')
                as house_number,
            nullif(replace(
                regexp_replace(street_tokens.street_address, '^[0-9]+[a-z]? *', ''), ' ', ''
            ), '') as street_name,
            source.postcode,
            source.city,
            source.state,
            source.email,
            nullif(split_part(source.email, '@', 1), '') as email_user,
            source.phone
        from source
        left join street_tokens on source.record_node = street_tokens.record_node
        left join first_variants on source.record_node = first_variants.record_node
        """
    )
    return _count(con, f"{scratch_schema}.match_input")


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    _check_identifier(table)
    # fetchall, not fetchone: this DuckDB keeps a half-read result open on the connection
    return int(con.execute(f"select count(*) from {table}").fetchall()[0][0])


def _check_identifier(name: str) -> None:
    parts = name.split(".")
    if not 1 <= len(parts) <= 2 or not all(p.isidentifier() for p in parts):
        raise ValueError(f"not a plain (schema.)table identifier: {name!r}")


def _source_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    schema, _, name = table.rpartition(".")
    return bool(
        con.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = ? and table_name = ?",
            [schema or "main", name],
        ).fetchall()[0][0]
    )
