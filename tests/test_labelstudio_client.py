"""The HTTP client's retries, backoff and errors, and the import's crash safety, on a scripted
transport (unit tests; the same paths run against the real server in test_labelstudio_push.py)."""

from __future__ import annotations

import json

import httpx
import pytest

from curation.errors import AuthError, ServiceError
from curation.labelstudio import LabelStudioClient, PushSummary, _import_chunk

TOKEN = "legacy-token-0123456789"


def _client(handler, **kwargs) -> tuple[LabelStudioClient, list[float]]:
    sleeps: list[float] = []
    client = LabelStudioClient("http://ls.test", kwargs.pop("token", TOKEN), transport=httpx.MockTransport(handler),
                               sleep=sleeps.append, **kwargs)
    return client, sleeps


def test_5xx_and_timeouts_are_retried_with_exponential_backoff():
    answers = iter([httpx.ReadTimeout("slow"), httpx.Response(502), httpx.Response(503), httpx.Response(200, json={"ok": 1})])

    def handler(request):
        assert request.headers["Authorization"] == f"Token {TOKEN}"
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    client, sleeps = _client(handler)
    assert client.get_json("/api/projects") == {"ok": 1}
    assert sleeps == [0.5, 1.0, 2.0]


def test_retries_give_up_with_a_clear_error():
    client, sleeps = _client(lambda request: httpx.Response(500, json={"detail": "db locked"}))
    with pytest.raises(ServiceError, match=r"failed GET /api/projects with 500 after 5 attempt\(s\): \"db locked\""):
        client.get_json("/api/projects")
    assert len(sleeps) == 4


def test_a_dead_server_names_the_fix():
    def handler(request):
        raise httpx.ConnectError("connection refused")

    client, _ = _client(handler, retries=1)
    with pytest.raises(ServiceError, match="labelstudio status"):
        client.get_json("/api/projects")


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failures_are_not_retried_and_never_show_the_token(status):
    calls = []

    def handler(request):
        calls.append(request)
        return httpx.Response(status, json={"detail": "Invalid token."})

    client, _ = _client(handler)
    with pytest.raises(AuthError) as info:
        client.get_json("/api/projects")
    assert len(calls) == 1
    assert TOKEN not in str(info.value) and "BELTCURATE_LABELSTUDIO_TOKEN" in str(info.value)


def test_404_names_the_resource():
    client, _ = _client(lambda request: httpx.Response(404, json={"detail": "Not found."}))
    with pytest.raises(ServiceError, match="project 99 not found"):
        client.project(99)


def test_imports_are_never_retried_blindly():
    calls = []

    def handler(request):
        calls.append(request)
        return httpx.Response(502)

    client, _ = _client(handler)
    with pytest.raises(ServiceError):
        client.import_tasks(1, [{"data": {"frame_id": 1}}])
    assert len(calls) == 1


def test_a_personal_access_token_is_exchanged_and_renewed_on_401():
    pat = "eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCJ9.c2ln"
    issued = []

    def handler(request):
        if request.url.path == "/api/token/refresh/":
            assert json.loads(request.content) == {"refresh": pat}
            issued.append(f"access-{len(issued)}")
            return httpx.Response(200, json={"access": issued[-1]})
        if request.headers["Authorization"] == "Bearer access-0":
            return httpx.Response(401)  # expired
        assert request.headers["Authorization"] == "Bearer access-1"
        return httpx.Response(200, json=[])

    client, _ = _client(handler, token=pat)
    assert client.get_json("/api/projects") == []
    assert issued == ["access-0", "access-1"]


class _FlakyImportServer:
    """Accepts the import, then drops the connection before answering (the classic duplicate)."""

    def __init__(self):
        self.tasks: list[dict] = []
        self.imports = 0

    def __call__(self, request):
        if request.url.path.endswith("/import"):
            self.imports += 1
            for task in json.loads(request.content):
                self.tasks.append({"id": len(self.tasks) + 1, "data": task["data"]})
            if self.imports == 1:
                raise httpx.ReadError("connection reset after the server committed")
            return httpx.Response(201, json={"task_ids": [t["id"] for t in self.tasks[-len(json.loads(request.content)):]]})
        if request.url.path == "/api/tasks":
            return httpx.Response(200, json={"tasks": self.tasks, "total": len(self.tasks)})
        raise AssertionError(request.url)


def test_an_import_that_landed_despite_an_error_is_not_sent_again():
    server = _FlakyImportServer()
    client, _ = _client(server)
    summary = PushSummary(project="p", project_id=1, purpose="label", model_version=None)
    tasks = [{"data": {"frame_id": fid}} for fid in (7, 8, 9)]
    landed = _import_chunk(client, 1, [7, 8, 9], tasks, summary)
    assert landed == {7: 1, 8: 2, 9: 3}
    assert server.imports == 1 and len(server.tasks) == 3
    assert summary.import_retries == 1 and summary.imported == 3
