"""The real Label Studio server for the tests, plus helpers that act as an annotator would.

``make test`` starts the server in the background before pytest runs (``scripts/labelstudio.sh
start test-output/labelstudio-server --background``); the session fixture waits for it and
reuses it. Without it (a plain ``pytest``) the fixture starts one and stops it at the end.
Frames for the tests live below ``test-output/`` because the server serves local files only
below its document root.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TEST_OUTPUT = REPO / "test-output"
SERVER_DIR_ENV = "BELTCURATE_TEST_LS_DIR"
DEFAULT_SERVER_DIR = TEST_OUTPUT / "labelstudio-server"
_titles = itertools.count()


@dataclass
class TestServer:
    """A running server: URL, admin credentials, document root."""

    __test__ = False  # not a test class

    server: object  # curation.lsserver.LabelStudioServer
    url: str
    username: str
    password: str
    token: str
    document_root: Path
    owned: bool

    def __repr__(self) -> str:
        return f"TestServer(url={self.url!r}, owned={self.owned})"

    def client(self, **kwargs):
        from curation.labelstudio import LabelStudioClient

        return LabelStudioClient(self.url, self.token, **kwargs)

    def frames_dir(self, name: str) -> Path:
        """A fresh folder for frames below the document root (one per test)."""
        path = self.document_root / "labelstudio-frames" / f"{name}-{uuid.uuid4().hex[:8]}"
        path.mkdir(parents=True)
        return path

    def stop(self) -> None:
        if self.owned:
            self.server.stop()


def session_server() -> TestServer:
    """Reuse the server ``make test`` launched (or one left running in the same folder), else start one."""
    from curation.lsserver import LabelStudioServer

    TEST_OUTPUT.mkdir(exist_ok=True)
    root = Path(os.environ.get(SERVER_DIR_ENV) or DEFAULT_SERVER_DIR)
    server = LabelStudioServer(root)
    owned = False
    if server.attach():
        if Path(server.state().get("document_root") or "/nonexistent").resolve() != TEST_OUTPUT.resolve():
            # Running for something else (another document root): leave it alone, start our own.
            server = LabelStudioServer(TEST_OUTPUT / f"labelstudio-server-{os.getpid()}")
            server.start(document_root=TEST_OUTPUT)
            owned = True
    else:
        server.start(document_root=TEST_OUTPUT)
        owned = True
    credentials = server.credentials()
    return TestServer(server, server.url, credentials.username, credentials.password, credentials.token,
                      TEST_OUTPUT.resolve(), owned)


def unique_title(prefix: str) -> str:
    return f"{prefix} {os.getpid()}-{next(_titles)}-{uuid.uuid4().hex[:6]}"


def make_frames(catalog, folder: Path, n: int, *, width: int = 320, height: int = 240, site: str = "west",
                camera: str = "cam1") -> list[int]:
    """Write ``n`` small JPEGs (coloured rectangles on a grey belt) and add them as frames."""
    import datetime as dt

    from PIL import Image, ImageDraw

    from curation.catalog import Frame

    ids = []
    with catalog.session() as session:
        for i in range(n):
            image = Image.new("RGB", (width, height), (90, 90, 95))
            draw = ImageDraw.Draw(image)
            draw.rectangle([20 + 7 * i % 100, 30, 120 + 7 * i % 100, 110], fill=(200, 150, 60))
            draw.rectangle([180, 120, 260, 200], fill=(40, 160, 220))
            path = folder / f"{site}_{camera}_{i:05d}.jpg"
            image.save(path, quality=90)
            data = path.read_bytes()
            frame = Frame(content_hash=hashlib.sha256(data).hexdigest(), path=str(path), width=width, height=height,
                          format="JPEG", size_bytes=len(data), site=site, line="L1", camera=camera,
                          captured_at=dt.datetime(2026, 3, 1, 12, 0, i % 60))
            session.add(frame)
            session.flush()
            ids.append(frame.id)
    return ids


def add_predictions(catalog, frame_ids, model_name: str = "det-v1", boxes=None) -> str:
    """A model version with two predicted boxes per frame (pixel xywh, per-box score)."""
    from curation.catalog import ModelVersion, Prediction

    boxes = boxes or [
        {"xywh_px": [20.0, 30.0, 100.0, 80.0], "label": "cardboard", "score": 0.91},
        {"xywh_px": [180.0, 120.0, 80.0, 80.0], "label": "pet_bottle", "score": 0.42},
    ]
    with catalog.session() as session:
        version = ModelVersion(name=model_name, arch="test", classes=[], meta={})
        session.add(version)
        session.flush()
        for k, frame_id in enumerate(frame_ids):
            session.add(Prediction(frame_id=frame_id, model_version_id=version.id, boxes=boxes,
                                   scores={"entropy_sum": 0.5 + k / 1000}, uncertainty=0.5 + k / 1000))
    return model_name


def region(xywh_px, label: str, width: int, height: int, region_id: str = "r0") -> dict:
    """One RectangleLabels region in Label Studio percent, as the editor saves it."""
    x, y, w, h = xywh_px
    return {
        "id": region_id, "type": "rectanglelabels", "from_name": "label", "to_name": "image",
        "original_width": width, "original_height": height, "image_rotation": 0,
        "value": {"x": 100 * x / width, "y": 100 * y / height, "width": 100 * w / width, "height": 100 * h / height,
                  "rotation": 0, "rectanglelabels": [label]},
    }


def annotate(client, task_id: int, regions: list[dict], *, lead_time: float = 12.5, was_cancelled: bool = False,
             ground_truth: bool = False) -> dict:
    """Submit an annotation through the API, as the editor's Submit/Skip button does."""
    return client.request("POST", f"/api/tasks/{task_id}/annotations/", json={
        "result": regions, "lead_time": lead_time, "was_cancelled": was_cancelled, "ground_truth": ground_truth,
    }).json()


def make_config(server: TestServer, *, project: str | None = None, chunk_size: int = 500, reconcile_every: int = 4,
                class_names=None, token: str | None = None):
    """A sync configuration for a fresh project on the test server."""
    from curation.labelstudio import LabelStudioConfig
    from curation.synth import CLASSES

    project = project or unique_title("test")
    return LabelStudioConfig(
        url=server.url, token=token or server.token, project=project, relabel_project=f"{project} relabel",
        image_root=server.document_root, image_base_url=None, chunk_size=chunk_size, reconcile_every=reconcile_every,
        class_names=tuple(class_names or CLASSES),
    )


def server_tasks(client, project_id: int) -> list[dict]:
    """Every task of a project with its data (one listing)."""
    tasks, _ = client.list_tasks(project_id, include="id,data")
    return tasks


def personal_access_token(server: TestServer) -> str:
    """The admin's personal access token (a JWT refresh token), created once per server and kept
    next to its credentials: Label Studio shows a new token only once and allows one at a time."""
    import json

    path = server.server.root / "personal_access_token.json"
    if path.exists():
        return json.loads(path.read_text())["token"]
    with server.client() as client:
        token = client.request("POST", "/api/token/", retry=False, what="create personal access token").json()["token"]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"token": token}, fh)
    return token
