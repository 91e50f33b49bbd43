"""Probabilistic matching and identity evaluation assets (see issue: identity resolution)."""

import dagster as dg

identity_assets: list[dg.AssetsDefinition] = []
identity_checks: list[dg.AssetChecksDefinition] = []
