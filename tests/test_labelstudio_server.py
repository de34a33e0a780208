"""The local server: start from the migrated template, stop by PID, refuse a busy port."""

from __future__ import annotations

import json
import socket
import urllib.request

import pytest
from click.testing import CliRunner

from curation.cli import main
from curation.errors import ServiceError
from curation.lsserver import LabelStudioServer, free_port, health, installed_version, pid_alive, port_is_free


def test_a_busy_port_is_refused_before_anything_starts(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        server = LabelStudioServer(tmp_path / "ls")
        with pytest.raises(ServiceError, match=f"port {port} on 127.0.0.1 is already in use"):
            server.start(port=port)
    assert server.pid is None and not server.is_running()


def test_a_missing_install_names_the_make_target(tmp_path):
    with pytest.raises(ServiceError, match="make labelstudio-venv"):
        installed_version(tmp_path)


def test_start_refuses_a_remote_url(tmp_path, settings_env):
    env = {"BELTCURATE_STATE_DIR": str(tmp_path / "state"), "BELTCURATE_LABELSTUDIO_URL": "https://ls.example.com"}
    out = CliRunner().invoke(main, ["labelstudio", "start"], env=env)
    assert out.exit_code == 1 and "not on this machine" in out.output


@pytest.mark.labelstudio
@pytest.mark.slow
def test_cli_start_status_stop(tmp_path, settings_env, labelstudio_server):
    # labelstudio_server first: the template is migrated, so this start is a copy (seconds).
    port = free_port()
    frames = tmp_path / "frames"
    frames.mkdir()
    env = {"BELTCURATE_STATE_DIR": str(tmp_path / "state"), "BELTCURATE_LABELSTUDIO_URL": f"http://127.0.0.1:{port}",
           "BELTCURATE_LABELSTUDIO_IMAGE_ROOT": str(frames)}
    runner = CliRunner()
    out = runner.invoke(main, ["labelstudio", "start", "--json"], env=env, catch_exceptions=False)
    server = LabelStudioServer(tmp_path / "state" / "labelstudio")
    try:
        assert out.exit_code == 0, out.output
        status = json.loads(out.output)
        assert status["up"] and status["url"] == f"http://127.0.0.1:{port}"
        credentials = server.credentials()
        assert credentials.token not in out.output and credentials.password not in out.output
        assert (server.credentials_file.stat().st_mode & 0o777) == 0o600
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/current-user/whoami",
                                         headers={"Authorization": f"Token {credentials.token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.loads(response.read())["email"] == credentials.username

        # push/pull find the local server's token without BELTCURATE_LABELSTUDIO_TOKEN
        from curation.labelstudio import LabelStudioConfig
        from curation.settings import load_settings

        assert LabelStudioConfig.from_settings(load_settings(env=env)).token == credentials.token

        text = runner.invoke(main, ["labelstudio", "status"], env=env, catch_exceptions=False).output
        assert f"up at http://127.0.0.1:{port}" in text and credentials.token not in text
        pid = status["pid"]
    finally:
        out = runner.invoke(main, ["labelstudio", "stop"], env=env, catch_exceptions=False)
    assert out.output.strip() == "stopped"
    assert not pid_alive(pid) and not health(f"http://127.0.0.1:{port}") and port_is_free("127.0.0.1", port)
    assert "not running" in runner.invoke(main, ["labelstudio", "status"], env=env).output


def test_a_server_folder_keeps_the_token_it_was_created_with(tmp_path):
    from curation.lsserver import Credentials

    server = LabelStudioServer(tmp_path / "ls")
    server.data_dir.mkdir(parents=True)
    (server.data_dir / "label_studio.sqlite3").write_bytes(b"")  # an existing server's data
    server._save_credentials(Credentials("admin@x", "pw-123456", "token-one-123"))
    with pytest.raises(ServiceError, match="created with another user or API token"):
        server.start(port=free_port(), credentials=Credentials("admin@x", "pw-123456", "token-two-456"))
    assert server.credentials().token == "token-one-123"
