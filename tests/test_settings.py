from __future__ import annotations

import pytest

from curation.errors import ConfigError
from curation.settings import SETTINGS, load_settings, mask


def test_defaults_file_env_precedence(tmp_path):
    config = tmp_path / "beltcurate.toml"
    config.write_text('[select]\nbudget = 200\nstrategy = "coreset"\n[labelstudio]\ntoken = "abcdef123456"\n')
    settings = load_settings(config, env={"BELTCURATE_SELECT_BUDGET": "300"})
    assert settings["select.budget"] == 300
    assert settings.source("select.budget") == "env:BELTCURATE_SELECT_BUDGET"
    assert settings["select.strategy"] == "coreset"
    assert settings.source("select.strategy").startswith("file:")
    assert settings["select.seed"] == 0 and settings.source("select.seed") == "default"


def test_secrets_are_masked_in_rows(tmp_path):
    settings = load_settings(None, env={"BELTCURATE_LABELSTUDIO_TOKEN": "supersecret-token",
                                        "BELTCURATE_CATALOG_URL": "postgresql+psycopg://u:pw@db/x"})
    rows = {r["name"]: r["value"] for r in settings.rows()}
    assert rows["labelstudio.token"] == "***"
    assert "pw" not in rows["catalog.url"] and rows["catalog.url"].endswith("@db/x")
    assert settings["labelstudio.token"] == "supersecret-token"


def test_unknown_setting_in_file_is_an_error(tmp_path):
    config = tmp_path / "beltcurate.toml"
    config.write_text("[select]\nbudgte = 5\n")
    with pytest.raises(ConfigError, match="select.budgte"):
        load_settings(config, env={})


def test_bad_type_names_setting_and_source():
    with pytest.raises(ConfigError, match="select.budget.*BELTCURATE_SELECT_BUDGET"):
        load_settings(None, env={"BELTCURATE_SELECT_BUDGET": "many"})


def test_list_and_bool_parsing():
    settings = load_settings(None, env={"BELTCURATE_EXPORT_FORMATS": "coco, voc", "BELTCURATE_SCORE_TTA_FLIP": "yes"})
    assert settings["export.formats"] == ["coco", "voc"]
    assert settings["score.tta_flip"] is True


def test_every_setting_has_help_and_unique_env_var():
    env_vars = [s.env_var for s in SETTINGS]
    assert len(env_vars) == len(set(env_vars))
    assert all(s.help for s in SETTINGS)


def test_mask():
    assert mask("tok") == "***"
    assert mask("postgresql://a:b@h/db") == "postgresql://***@h/db"
