"""dbt-duckdb plugin: configures every dbt connection like the Dagster resource's."""

from __future__ import annotations

from typing import Any

from dbt.adapters.duckdb.plugins import BasePlugin

from warehouse.connection import configure_connection


class Plugin(BasePlugin):
    def initialize(self, plugin_config: dict[str, Any]) -> None:
        key = plugin_config.get("hmac_key") or ""
        if not key:
            raise ValueError("MICROSEG_HMAC_KEY is empty: run dbt through microseg, which sets it")
        self._key = key.encode("utf-8")
        self._region = plugin_config.get("phone_region") or "US"

    def configure_connection(self, conn: Any) -> None:
        configure_connection(conn, self._key, self._region)

    # dbt runs models on cursors, and DuckDB variables live per cursor.
    def configure_cursor(self, cursor: Any) -> None:
        configure_connection(cursor, self._key, self._region)
