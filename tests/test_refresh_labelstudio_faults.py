"""Label Studio down, answering 500, or slow during a refresh: retries, then a clean failure that
names the stage; the rerun completes. The server is the real one, behind a fault-injecting proxy."""

from __future__ import annotations

import http.client
import os
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support.labelstudio import unique_title
from tests.support.postgres import free_port

pytestmark = pytest.mark.labelstudio

REPO = Path(__file__).resolve().parent.parent
CHECKPOINT = REPO / "models" / "demo_fcos_mnv3s.pt"


class FaultProxy:
    """Forwards to Label Studio; ``mode`` = ok | error500 | slow; ``fail_first`` 500s first."""

    def __init__(self, upstream: str):
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port)
        self.mode = "ok"
        self.fail_first = 0
        self.delay_s = 0.0
        self.requests = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def _handle(self):
                proxy.requests += 1
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if proxy.mode == "error500" or proxy.fail_first > 0:
                    proxy.fail_first = max(0, proxy.fail_first - 1)
                    self.send_response(500)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(b'{"detail": "injected server error"}')
                    return
                if proxy.mode == "slow":
                    time.sleep(proxy.delay_s)
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def world(labelstudio_server, synth_small, tmp_path, monkeypatch):
    server = labelstudio_server
    inbox = server.frames_dir("refresh-faults")
    for path in sorted((synth_small / "images").rglob("*.jpg"))[:30]:
        target = inbox / path.relative_to(synth_small / "images")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    for key in list(os.environ):
        if key.startswith("BELTCURATE_"):
            monkeypatch.delenv(key)
    proxy = FaultProxy(server.url)
    env = {
        "BELTCURATE_STATE_DIR": str(tmp_path / "state"),
        "BELTCURATE_REFRESH_INPUTS": str(inbox),
        "BELTCURATE_MODEL_CHECKPOINT": str(CHECKPOINT),
        "BELTCURATE_SELECT_BUDGET": "5",
        "BELTCURATE_LABELSTUDIO_URL": proxy.url,
        "BELTCURATE_LABELSTUDIO_TOKEN": server.token,
        "BELTCURATE_LABELSTUDIO_PROJECT": unique_title("faults"),
        "BELTCURATE_LABELSTUDIO_IMAGE_ROOT": str(server.document_root),
        "BELTCURATE_LABELSTUDIO_TIMEOUT_S": "1.5",
        "BELTCURATE_LABELSTUDIO_RETRIES": "2",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    yield proxy, monkeypatch
    proxy.close()


def _refresh():
    from curation.catalog import Catalog
    from curation.refresh import refresh
    from curation.settings import load_settings

    settings = load_settings()
    catalog = Catalog(settings.catalog_url)
    try:
        return refresh(catalog, settings)
    finally:
        catalog.dispose()


def _task_count(server, project: str) -> int:
    with server.client() as client:
        project_id = client.projects_titled(project)[0]["id"]
        tasks, _ = client.list_tasks(project_id, include="id,data")
    frame_ids = [t["data"]["frame_id"] for t in tasks]
    assert len(frame_ids) == len(set(frame_ids)), "duplicate tasks"
    return len(frame_ids)


def test_labelstudio_down_then_back(world, labelstudio_server):
    from curation.refresh import StageError

    proxy, monkeypatch = world
    assert _refresh().stages["push"]["counts"]["imported"] == 5
    monkeypatch.setenv("BELTCURATE_LABELSTUDIO_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens
    started = time.perf_counter()
    with pytest.raises(StageError, match="stage 'pull'") as failure:
        _refresh()
    assert "127.0.0.1" in str(failure.value)
    assert time.perf_counter() - started < 120  # retries with backoff, then gives up
    monkeypatch.setenv("BELTCURATE_LABELSTUDIO_URL", proxy.url)
    summary = _refresh()
    assert summary.status in ("success", "nothing_to_do")
    assert summary.stages["push"]["status"] == "done"  # the failed cycle's selection went out now
    assert _task_count(labelstudio_server, os.environ["BELTCURATE_LABELSTUDIO_PROJECT"]) == 10


def test_labelstudio_answering_500_is_retried_then_fails_cleanly(world, labelstudio_server):
    from curation.refresh import StageError

    proxy, _ = world
    _refresh()
    proxy.mode = "error500"
    before = proxy.requests
    with pytest.raises(StageError, match="stage 'pull'.*500"):
        _refresh()
    assert proxy.requests - before == 3  # one try + 2 retries (labelstudio.retries)
    proxy.mode = "ok"
    proxy.fail_first = 2  # a flaky moment: two 500s, then the server answers
    summary = _refresh()
    assert summary.stages["pull"]["status"] == "done" and summary.stages["push"]["status"] == "done"
    assert _task_count(labelstudio_server, os.environ["BELTCURATE_LABELSTUDIO_PROJECT"]) == 10


def test_slow_labelstudio_times_out_then_rerun_completes(world, labelstudio_server):
    from curation.refresh import StageError

    proxy, _ = world
    _refresh()
    proxy.mode, proxy.delay_s = "slow", 3.0  # slower than labelstudio.timeout_s = 1.5
    with pytest.raises(StageError, match="stage 'pull'"):
        _refresh()
    proxy.mode = "ok"
    summary = _refresh()
    assert summary.stages["push"]["status"] == "done"
    assert _task_count(labelstudio_server, os.environ["BELTCURATE_LABELSTUDIO_PROJECT"]) == 10
