"""Label config, image URLs and configuration of the Label Studio sync (no server needed)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from curation.errors import ConfigError, InputError
from curation.labelstudio import (
    LabelStudioClient,
    LabelStudioConfig,
    image_url,
    is_personal_access_token,
    label_config,
    labels_in_config,
    storage_dirs,
)


def _config(tmp_path: Path, **overrides) -> LabelStudioConfig:
    values = dict(url="http://127.0.0.1:8080", token="secret-token-123", project="p", relabel_project="p relabel",
                  image_root=tmp_path, image_base_url=None, chunk_size=10, reconcile_every=4, class_names=("a", "b"))
    values.update(overrides)
    return LabelStudioConfig(**values)


def test_label_config_lists_every_class_in_order_and_escapes_names():
    names = ["cardboard", 'odd "name" & <tag>', "battery"]
    xml = label_config(names)
    root = ET.fromstring(xml)  # well-formed despite the odd class name
    control = root.find("RectangleLabels")
    assert control.get("name") == "label" and control.get("toName") == "image"
    assert [label.get("value") for label in control.iter("Label")] == names
    assert root.find("Image").get("value") == "$image"
    assert labels_in_config(xml) == names


def test_label_config_refuses_an_empty_class_map():
    with pytest.raises(InputError, match="class map is empty"):
        label_config([])


def test_labels_in_config_of_a_foreign_or_broken_config_is_empty():
    assert labels_in_config("<View><Choices name='c' toName='t'/></View>") == []
    assert labels_in_config("<View") == []


def test_image_url_for_local_files_is_relative_to_the_document_root(tmp_path):
    frame = tmp_path / "west" / "cam 1" / "f.jpg"
    assert image_url(frame, _config(tmp_path)) == "/data/local-files/?d=west/cam%201/f.jpg"


def test_image_url_with_a_base_url(tmp_path):
    frame = tmp_path / "west" / "f.jpg"
    config = _config(tmp_path, image_base_url="https://cdn.example.com/belt/")
    assert image_url(frame, config) == "https://cdn.example.com/belt/west/f.jpg"


def test_image_url_errors_name_the_frame_and_the_fix(tmp_path):
    with pytest.raises(InputError, match="not below labelstudio.image_root"):
        image_url("/elsewhere/f.jpg", _config(tmp_path))
    with pytest.raises(InputError, match="subfolder"):
        image_url(tmp_path / "f.jpg", _config(tmp_path))
    with pytest.raises(ConfigError, match="labelstudio.image_root"):
        image_url(tmp_path / "a" / "f.jpg", _config(tmp_path, image_root=None))


def test_storage_dirs_are_the_top_level_subfolders(tmp_path):
    paths = [tmp_path / "west" / "cam1" / "a.jpg", tmp_path / "west" / "cam2" / "b.jpg", tmp_path / "east" / "c.jpg"]
    assert storage_dirs(paths, tmp_path) == [tmp_path.resolve() / "east", tmp_path.resolve() / "west"]


def test_personal_access_tokens_are_told_from_legacy_tokens():
    assert is_personal_access_token("eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCJ9.c2lnbmF0dXJl")
    assert not is_personal_access_token("0123456789abcdef0123456789abcdef01234567")


def test_the_token_never_shows_in_reprs(tmp_path):
    config = _config(tmp_path, token="very-secret-value")
    assert "very-secret-value" not in repr(config)
    client = LabelStudioClient(config.url, config.token)
    assert "very-secret-value" not in repr(client)
    client.close()


def test_a_missing_token_is_a_config_error_naming_the_setting():
    with pytest.raises(ConfigError, match="BELTCURATE_LABELSTUDIO_TOKEN"):
        LabelStudioClient("http://127.0.0.1:8080", None)


def test_config_from_settings(settings_env, monkeypatch, tmp_path):
    from curation.settings import load_settings

    monkeypatch.setenv("BELTCURATE_LABELSTUDIO_TOKEN", "tok-from-env")
    monkeypatch.setenv("BELTCURATE_LABELSTUDIO_PROJECT", "belt west")
    monkeypatch.setenv("BELTCURATE_LABELSTUDIO_IMAGE_ROOT", str(tmp_path))
    config = LabelStudioConfig.from_settings(load_settings())
    assert config.token == "tok-from-env"
    assert config.relabel_project == "belt west relabel"
    assert config.image_root == tmp_path
    assert "battery" in config.class_names  # the synthetic belt classes by default


def test_config_uses_the_class_map_file(settings_env, monkeypatch, tmp_path):
    from curation.settings import load_settings

    class_map = tmp_path / "classes.yaml"
    class_map.write_text("- can\n- bottle\n")
    monkeypatch.setenv("BELTCURATE_CLASSES", str(class_map))
    assert LabelStudioConfig.from_settings(load_settings()).class_names == ("can", "bottle")


def test_a_bad_chunk_size_is_refused(settings_env, monkeypatch):
    from curation.settings import load_settings

    monkeypatch.setenv("BELTCURATE_LABELSTUDIO_CHUNK_SIZE", "0")
    with pytest.raises(ConfigError, match="chunk_size"):
        LabelStudioConfig.from_settings(load_settings())
