"""One asset per landing-zone source: files into raw.<source>, bad rows into quarantine."""

import dagster as dg

from orchestration.defs.layers import table_metadata, table_spec_kwargs
from orchestration.defs.resources import WarehouseResource
from warehouse.ingest import SOURCES, ensure_raw_schema, load_source


def _ingest_asset(source: str) -> dg.AssetsDefinition:
    @dg.asset(
        **table_spec_kwargs("raw", source, f"raw.{source}"),
        kinds={"duckdb"},
        description=f"Rows of the `{source}/` landing folder, typed; rejected rows in "
        f"raw.{source}_quarantine. Incremental by file (raw.load_ledger); its gates prove rows "
        "read = rows loaded + rows quarantined per file and judge each file: rejected, share "
        "quarantined, renamed, retyped or unknown columns.",
    )
    def _asset(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
        with warehouse.connect() as con:
            ensure_raw_schema(con)
            result = load_source(
                con, source, warehouse.landing_dir, warehouse.run_date(), run_id=context.run_id
            )
            counts = table_metadata(con, f"raw.{source}")
            quarantined = con.execute(f"select count(*) from raw.{source}_quarantine").fetchone()[0]
        for path, message in result.files_rejected:
            context.log.error(f"rejected {path}: {message}")
        return dg.MaterializeResult(
            metadata={
                "files_seen": result.files_seen,
                "files_loaded": result.files_loaded,
                "files_unchanged": result.files_skipped_unchanged,
                "files_rejected": len(result.files_rejected),
                "rejected": dg.MetadataValue.json(
                    [{"file": p, "message": m} for p, m in result.files_rejected]
                ),
                "rows_read": sum(f.rows_read or 0 for f in result.files),
                "rows_loaded": result.rows_loaded,
                "rows_quarantined": result.rows_quarantined,
                **counts,
                "quarantine_total": dg.MetadataValue.int(int(quarantined)),
            }
        )

    return _asset


ingest_assets = [_ingest_asset(source) for source in SOURCES]
