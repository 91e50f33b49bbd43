"""Settings: defaults, validation, and the generated HMAC key."""

from __future__ import annotations

import stat
from datetime import date

import pytest

from orchestration.settings import SettingsError, load_settings


def test_defaults_resolve_to_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings({})
    assert settings.warehouse == tmp_path / "data" / "warehouse.duckdb"
    assert settings.landing_dir == tmp_path / "data" / "landing"
    assert settings.serving.is_absolute() and settings.as_of is None
    assert settings.phone_region == "US" and settings.holdout_share == 0.1


def test_generated_key_is_private_and_reused(tmp_path):
    env = {"MICROSEG_WAREHOUSE": str(tmp_path / "w.duckdb")}
    first = load_settings(env)
    key_file = tmp_path / ".hmac_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert load_settings(env).hmac_key == first.hmac_key and len(first.hmac_key) == 64
    assert "hmac_key" not in repr(first)


def test_explicit_key_and_as_of(tmp_path):
    env = {
        "MICROSEG_WAREHOUSE": str(tmp_path / "w.duckdb"),
        "MICROSEG_HMAC_KEY": "secret",
        "MICROSEG_AS_OF": "2026-06-30",
    }
    settings = load_settings(env)
    assert settings.hmac_key == "secret" and settings.as_of == date(2026, 6, 30)
    assert not (tmp_path / ".hmac_key").exists()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MICROSEG_AS_OF", "30/06/2026"),
        ("MICROSEG_HOLDOUT_SHARE", "0.9"),
        ("MICROSEG_MIN_SEGMENT_SIZE", "zero"),
        ("MICROSEG_PHONE_REGION", "USA"),
    ],
)
def test_bad_values_are_named(tmp_path, name, value):
    env = {"MICROSEG_WAREHOUSE": str(tmp_path / "w.duckdb"), name: value}
    with pytest.raises(SettingsError, match=name):
        load_settings(env)


def test_dotenv_fills_in_what_the_environment_leaves_unset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(
        "# local overrides\n"
        "MICROSEG_HOLDOUT_SHARE=0.2   # a wider holdout\n"
        "MICROSEG_PHONE_REGION='GB'\n"
        "MICROSEG_HMAC_KEY=from-dotenv\n"
    )
    for name in ("MICROSEG_HOLDOUT_SHARE", "MICROSEG_PHONE_REGION", "MICROSEG_WAREHOUSE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MICROSEG_HMAC_KEY", "from-environment")
    settings = load_settings()
    assert settings.holdout_share == 0.2 and settings.phone_region == "GB"
    assert settings.hmac_key == "from-environment"
