"""Label Studio sync: project set-up, push frames with pre-annotations, pull annotations back.

Idempotent against the server itself: every task carries our ``frame_id`` in its ``data``; before
importing, the project's tasks are listed (one paged call, ~0.5 s per 1,000 tasks) and frames
already there are adopted instead of imported again, also when a previous push crashed between
Label Studio's import and our catalog commit.

Pull reads in bulk, never per task: one filtered listing (``id``, ``updated_at``) names the tasks
changed since the last pull (editing or deleting an annotation touches its task's
``updated_at``), then the project export endpoint returns those tasks with all their annotations,
900 per request. Every ``labelstudio.reconcile_every``-th pull lists the whole project instead,
which also catches deleted tasks.

Coordinates: Label Studio speaks ``ls_percent`` of the image; the catalog stores ``xywh_px``. The
conversion lives in :mod:`exporters.labelstudio`.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import re
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence
from urllib.parse import quote, urlsplit
from xml.sax.saxutils import quoteattr

from curation.errors import AuthError, ConfigError, InputError, ServiceError

SOURCE = "labelstudio"  # Annotation.source of pulled annotations
FROM_NAME = "label"  # the RectangleLabels control in our label config
TO_NAME = "image"  # the Image object in our label config
RELABEL_MODEL_VERSION = "current-labels"  # pre-annotations of relabel tasks are the current labels

# HTTP: a request that fails with a 5xx, 429, a timeout or a dropped connection is retried this
# many times, waiting BACKOFF_S * 2**attempt between tries (0.5, 1, 2, 4 s). Raising RETRIES
# rides out longer server restarts but makes a dead server take longer to report.
RETRIES = 4
BACKOFF_S = 0.5
TIMEOUT_S = 120.0  # one export of EXPORT_CHUNK tasks takes ~1.5 s; generous for busy machines
# Tasks per listing page: one page of 5,000 ``id,data`` rows is ~2 s; larger pages gain nothing.
LIST_PAGE_SIZE = 5000
# Tasks per export request: the community edition serializes an export in one request, and
# whole-project exports of a few thousand images time out behind proxies; 900 keeps each
# request near 1.5 s. Task ids travel as ``ids[]`` query fields and Django answers 400 to more
# than 1,000 fields (DATA_UPLOAD_MAX_NUMBER_FIELDS), so stay well below that.
EXPORT_CHUNK = 900
# An import that failed in transit may still have landed: the project is re-listed and only the
# missing frames are sent again, at most this many times.
IMPORT_ATTEMPTS = 3
# Incremental pulls list tasks updated after the previous pull's start, by the server's clock
# (the Date header of a request sent before listing, 1 s resolution), minus this overlap: a
# task saved just before that moment may commit a little later (a 1,000-task import takes ~1 s).
# Overlap only re-reads a few tasks (upserts are idempotent); too little could miss an edit.
WATERMARK_OVERLAP_S = 2
# Two annotations of one task agree when their boxes match one to one with the same label and
# at least this IoU; otherwise the disagreement is recorded on the current annotation.
AGREEMENT_IOU = 0.5


# --------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class LabelStudioConfig:
    """What the sync needs from the settings (``labelstudio.*``)."""

    url: str
    token: str | None
    project: str
    relabel_project: str
    image_root: Path | None
    image_base_url: str | None
    chunk_size: int
    reconcile_every: int
    class_names: tuple[str, ...]
    timeout_s: float = TIMEOUT_S
    retries: int = RETRIES

    def __post_init__(self) -> None:
        if self.image_root is not None and not isinstance(self.image_root, Path):
            object.__setattr__(self, "image_root", Path(self.image_root))
        object.__setattr__(self, "class_names", tuple(self.class_names))

    def __repr__(self) -> str:  # the token never reaches logs or tracebacks
        return f"LabelStudioConfig(url={self.url!r}, project={self.project!r}, token={'***' if self.token else None})"

    @classmethod
    def from_settings(cls, settings) -> "LabelStudioConfig":
        image_root = settings["labelstudio.image_root"]
        project = settings["labelstudio.project"]
        chunk_size = int(settings["labelstudio.chunk_size"])
        if chunk_size < 1:
            raise ConfigError(f"labelstudio.chunk_size must be at least 1, got {chunk_size}")
        return cls(
            url=settings["labelstudio.url"].rstrip("/"),
            token=settings["labelstudio.token"] or _local_server_token(settings),
            project=project,
            relabel_project=settings["labelstudio.relabel_project"] or f"{project} relabel",
            image_root=settings.resolve_path(image_root) if image_root else None,
            image_base_url=settings["labelstudio.image_base_url"],
            chunk_size=chunk_size,
            reconcile_every=int(settings["labelstudio.reconcile_every"]),
            class_names=tuple(class_names_from_settings(settings)),
            timeout_s=float(settings["labelstudio.timeout_s"]),
            retries=int(settings["labelstudio.retries"]),
        )


def as_config(settings_or_config) -> LabelStudioConfig:
    """Accept either the settings or a ready :class:`LabelStudioConfig` (library callers)."""
    if isinstance(settings_or_config, LabelStudioConfig):
        return settings_or_config
    return LabelStudioConfig.from_settings(settings_or_config)


def local_server_dir(settings) -> Path:
    """Folder of the server run by ``beltcurate labelstudio start``."""
    return settings.state_dir / "labelstudio"


def _local_server_token(settings) -> str | None:
    """The token of the local server started by ``beltcurate labelstudio start`` (same URL)."""
    from curation.lsserver import LabelStudioServer

    server = LabelStudioServer(local_server_dir(settings))
    if server.credentials_file.exists() and server.url and server.url.rstrip("/") == settings["labelstudio.url"].rstrip("/"):
        return server.credentials().token
    return None


def class_names_from_settings(settings) -> list[str]:
    """Class names in id order: the ``classes`` class map file, else the synthetic belt classes."""
    if settings["classes"]:
        from exporters.types import load_class_map

        return load_class_map(settings.resolve_path(settings["classes"]))
    from curation.synth import CLASSES

    return list(CLASSES)


# --------------------------------------------------------------------------------------------
# HTTP client


def is_personal_access_token(token: str) -> bool:
    """Personal access tokens are JWT refresh tokens (three base64url parts); legacy ones are hex."""
    return bool(re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token))


def server_time(response) -> dt.datetime | None:
    """The server's clock from a response's ``Date`` header (naive UTC, 1 s resolution)."""
    raw = response.headers.get("date")
    if not raw:
        return None
    return email.utils.parsedate_to_datetime(raw).astimezone(dt.timezone.utc).replace(tzinfo=None)


class LabelStudioClient:
    """A small HTTP client for the Label Studio API: retries, clear errors, bulk helpers.

    Retries with exponential backoff on 5xx, 429, timeouts and dropped connections (GET and
    idempotent writes; callers pass ``retry=False`` for imports, which they make safe
    themselves). 401/403 raise :class:`AuthError`, 404 a :class:`ServiceError` naming the
    resource. ``token`` is a legacy API token or a personal access token (exchanged for a
    short-lived access token, renewed on 401). The token never appears in messages.
    """

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout: float = TIMEOUT_S,
        retries: int = RETRIES,
        backoff_s: float = BACKOFF_S,
        transport=None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        import httpx

        if not token:
            raise ConfigError(
                f"no Label Studio token for {url}: set BELTCURATE_LABELSTUDIO_TOKEN (or labelstudio.token in "
                "beltcurate.toml) to your API token (Label Studio: Account & Settings > Access Token), "
                "or run 'beltcurate labelstudio start' for a local server"
            )
        self.url = url.rstrip("/")
        self._token = token
        self._access: str | None = None
        self.retries = retries
        self.backoff_s = backoff_s
        self._sleep = sleep
        self._http = httpx.Client(base_url=self.url, timeout=timeout, transport=transport,
                                  headers={"Accept": "application/json"})

    def __repr__(self) -> str:
        return f"LabelStudioClient({self.url!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "LabelStudioClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- core -----------------------------------------------------------------------------
    def _authorization(self, renew: bool = False) -> str:
        if not is_personal_access_token(self._token):
            return f"Token {self._token}"
        if self._access is None or renew:
            import httpx

            try:
                response = self._http.post("/api/token/refresh/", json={"refresh": self._token})
            except httpx.TransportError as exc:
                raise ServiceError(f"cannot reach Label Studio at {self.url} ({type(exc).__name__}); is it running?") from None
            if response.status_code != 200:
                raise AuthError(
                    f"Label Studio at {self.url} rejected the personal access token ({response.status_code}); "
                    "create a new one in Account & Settings and set BELTCURATE_LABELSTUDIO_TOKEN"
                )
            self._access = response.json()["access"]
        return f"Bearer {self._access}"

    def request(self, method: str, path: str, *, params=None, json=None, retry: bool = True, what: str | None = None):
        """Send one request; return the ``httpx.Response`` of a 2xx answer or raise a clear error."""
        import httpx

        what = what or f"{method} {path}"
        attempts = 1 + (self.retries if retry else 0)
        renewed = False
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.request(method, path, params=params, json=json,
                                              headers={"Authorization": self._authorization()})
            except httpx.TransportError as exc:  # timeouts, refused and dropped connections
                if attempt < attempts:
                    self._sleep(self.backoff_s * 2 ** (attempt - 1))
                    continue
                raise ServiceError(
                    f"Label Studio at {self.url} did not answer {what} ({type(exc).__name__}: {exc}) after "
                    f"{attempt} attempt(s); check that it runs ('beltcurate labelstudio status') and labelstudio.url"
                ) from None
            status = response.status_code
            if status == 401 and is_personal_access_token(self._token) and not renewed:
                renewed = True
                self._authorization(renew=True)
                continue
            if status in (401, 403):
                raise AuthError(
                    f"Label Studio at {self.url} refused {what} ({status} {_detail(response)}); check "
                    "BELTCURATE_LABELSTUDIO_TOKEN / labelstudio.token and that this user may access the project"
                )
            if status == 404:
                raise ServiceError(f"Label Studio at {self.url}: {what} not found (404); was it deleted, or is labelstudio.url wrong?")
            if status >= 500 or status == 429:
                if attempt < attempts:
                    self._sleep(self.backoff_s * 2 ** (attempt - 1))
                    continue
                raise ServiceError(f"Label Studio at {self.url} failed {what} with {status} after {attempt} attempt(s): {_detail(response)}")
            if status >= 400:
                raise ServiceError(f"Label Studio at {self.url} rejected {what} ({status}): {_detail(response)}")
            return response

    def get_json(self, path: str, **kwargs) -> Any:
        return self.request("GET", path, **kwargs).json()

    # -- resources ------------------------------------------------------------------------
    def whoami(self) -> dict[str, Any]:
        return self.get_json("/api/current-user/whoami", what="current user")

    def server_now(self) -> dt.datetime:
        """The server's clock (naive UTC, whole seconds), from a cheap authenticated request."""
        response = self.request("GET", "/api/current-user/whoami", what="current user")
        return server_time(response) or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)

    def users(self) -> dict[int, str]:
        """User id -> email for everyone in the organization (annotator names)."""
        data = self.get_json("/api/users", params={"page_size": 10000}, what="user list")
        rows = data.get("results", data) if isinstance(data, dict) else data
        return {int(row["id"]): row.get("email") or row.get("username") or str(row["id"]) for row in rows}

    def projects_titled(self, title: str) -> list[dict[str, Any]]:
        """Projects whose title is exactly ``title`` (the API filter is a substring match)."""
        found, page = [], 1
        while True:
            data = self.get_json("/api/projects", params={"title": title, "page": page, "page_size": 100},
                                 what=f"projects titled {title!r}")
            rows = data.get("results", data) if isinstance(data, dict) else data
            found += [row for row in rows if row.get("title") == title]
            if not (isinstance(data, dict) and data.get("next")):
                return sorted(found, key=lambda row: row["id"])
            page += 1

    def project(self, project_id: int) -> dict[str, Any]:
        return self.get_json(f"/api/projects/{project_id}", what=f"project {project_id}")

    def create_project(self, **fields: Any) -> dict[str, Any]:
        return self.request("POST", "/api/projects", json=fields, retry=False, what="create project").json()

    def update_project(self, project_id: int, **fields: Any) -> dict[str, Any]:
        return self.request("PATCH", f"/api/projects/{project_id}", json=fields, what=f"update project {project_id}").json()

    def local_storages(self, project_id: int) -> list[dict[str, Any]]:
        return self.get_json("/api/storages/localfiles", params={"project": project_id}, what="local-files storages")

    def create_local_storage(self, project_id: int, path: Path, title: str) -> dict[str, Any]:
        return self.request(
            "POST", "/api/storages/localfiles",
            json={"project": project_id, "path": str(path), "title": title, "use_blob_urls": False,
                  "regex_filter": "", "recursive_scan": True},
            retry=False, what=f"local-files storage for {str(path)!r}",
        ).json()

    def import_tasks(self, project_id: int, tasks: list[dict[str, Any]]) -> list[int]:
        """Import tasks in one call; returns their new ids in the order given. Not retried."""
        data = self.request("POST", f"/api/projects/{project_id}/import", params={"return_task_ids": "true"},
                            json=tasks, retry=False, what=f"import of {len(tasks)} tasks").json()
        task_ids = [int(task_id) for task_id in data.get("task_ids", [])]
        if len(task_ids) != len(tasks):
            raise ServiceError(f"Label Studio imported {data.get('task_count')} of {len(tasks)} tasks into project {project_id}")
        return task_ids

    def list_tasks(
        self, project_id: int, *, include: str = "id,data", filters: list[dict[str, Any]] | None = None,
        page_size: int = LIST_PAGE_SIZE,
    ) -> tuple[list[dict[str, Any]], dt.datetime | None]:
        """All tasks of a project (only the ``include`` fields), and the server time before listing.

        ``filters`` are Data Manager filter items (``{"filter": "filter:tasks:updated_at", ...}``).
        """
        params: dict[str, Any] = {"project": project_id, "include": include, "page_size": page_size}
        if filters:
            params["query"] = json.dumps({"filters": {"conjunction": "and", "items": filters}})
        tasks: list[dict[str, Any]] = []
        now = None
        page = 1
        while True:
            response = self.request("GET", "/api/tasks", params={**params, "page": page}, what=f"task list of project {project_id}")
            if now is None:
                now = server_time(response)
            data = response.json()
            tasks += data["tasks"]
            # Asking for the page after the last one is a 404: stop by the total instead.
            if not data["tasks"] or len(tasks) >= int(data.get("total", 0)):
                return tasks, now
            page += 1

    def export_tasks(self, project_id: int, task_ids: Sequence[int], chunk: int = EXPORT_CHUNK) -> Iterator[list[dict[str, Any]]]:
        """Yield the given tasks with all annotations (JSON export), ``chunk`` tasks per request."""
        for start in range(0, len(task_ids), chunk):
            ids = [str(task_id) for task_id in task_ids[start:start + chunk]]
            yield self.get_json(
                f"/api/projects/{project_id}/export",
                params={"exportType": "JSON", "download_all_tasks": "true", "ids[]": ids},
                what=f"export of {len(ids)} tasks of project {project_id}",
            )


def _detail(response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:300].strip() or response.reason_phrase
    if isinstance(data, dict):
        for key in ("validation_errors", "detail", "message", "error"):
            if data.get(key):
                return json.dumps(data[key])[:500]
    return json.dumps(data)[:500]


def client_from_config(config: LabelStudioConfig) -> LabelStudioClient:
    return LabelStudioClient(config.url, config.token, timeout=config.timeout_s, retries=config.retries)


# --------------------------------------------------------------------------------------------
# project set-up (pure parts first)


def label_config(class_names: Sequence[str]) -> str:
    """The labeling interface: the frame, one RectangleLabels control with the class map, and the
    reason the frame was picked (shown to the annotator)."""
    if not class_names:
        raise InputError("the class map is empty; set 'classes' to a class map file")
    colors = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
              "#fabed4", "#469990", "#dcbeff", "#9a6324", "#800000", "#aaffc3", "#808000", "#000075")
    labels = "\n".join(
        f"    <Label value={quoteattr(name)} background={quoteattr(colors[i % len(colors)])}/>"
        for i, name in enumerate(class_names)
    )
    return (
        "<View>\n"
        f'  <Image name="{TO_NAME}" value="$image" zoom="true" zoomControl="true"/>\n'
        f'  <RectangleLabels name="{FROM_NAME}" toName="{TO_NAME}" strokeWidth="2">\n'
        f"{labels}\n"
        "  </RectangleLabels>\n"
        '  <Header value="$reason" size="6"/>\n'
        "</View>"
    )


def labels_in_config(config_xml: str) -> list[str]:
    """Label values of our RectangleLabels control in a label config (empty if absent)."""
    try:
        root = ET.fromstring(config_xml)
    except ET.ParseError:
        return []
    for control in root.iter("RectangleLabels"):
        if control.get("name") == FROM_NAME:
            return [label.get("value", "") for label in control.iter("Label")]
    return []


def ensure_project(client: LabelStudioClient, title: str, class_names: Sequence[str], model_version: str | None) -> dict[str, Any]:
    """The project titled ``title`` (created if missing, the oldest if several), with a label
    config holding every class. A new project starts with ``model_version``; an existing one
    gets it from :func:`set_model_version` once predictions of that version are imported
    (Label Studio refuses a model_version no prediction has)."""
    projects = client.projects_titled(title)
    if not projects:
        fields: dict[str, Any] = {"title": title, "label_config": label_config(class_names),
                                  "description": "Frames picked by beltcurate (uncertainty x diversity)."}
        if model_version:
            fields["model_version"] = model_version
        return client.create_project(**fields)
    project = projects[0]
    updates: dict[str, Any] = {}
    existing = labels_in_config(project.get("label_config") or "")
    if not set(class_names) <= set(existing):
        # Keep classes that only the server knows (annotations may use them) and add ours.
        updates["label_config"] = label_config([*existing, *[c for c in class_names if c not in existing]])
    if updates:
        project = client.update_project(project["id"], **updates)
    return project


def set_model_version(client: LabelStudioClient, project: dict[str, Any], model_version: str | None) -> bool:
    """Point the project at ``model_version``: the editor pre-labels only with predictions of the
    project's model_version, so this follows the detector. True if it changed."""
    if not model_version or project.get("model_version") == model_version:
        return False
    client.update_project(int(project["id"]), model_version=model_version)
    project["model_version"] = model_version
    return True


def image_url(frame_path: str | Path, config: LabelStudioConfig) -> str:
    """The ``data.image`` of a frame: a local-files URL below ``image_root`` or ``image_base_url``."""
    if config.image_root is None:
        raise ConfigError(
            "set labelstudio.image_root (the server's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT, or the folder "
            "that image_base_url serves) so frames can be shown in Label Studio"
        )
    try:
        relative = Path(frame_path).resolve().relative_to(config.image_root.resolve())
    except ValueError:
        raise InputError(f"frame {str(frame_path)!r} is not below labelstudio.image_root {str(config.image_root)!r}; "
                         "set image_root to a folder that holds all frames") from None
    if config.image_base_url:
        return f"{config.image_base_url.rstrip('/')}/{quote(relative.as_posix(), safe='/')}"
    if len(relative.parts) < 2:
        raise InputError(f"frame {str(frame_path)!r} lies directly in labelstudio.image_root; Label Studio serves "
                         "local files only from subfolders of its document root: move frames into a subfolder")
    return f"/data/local-files/?d={quote(relative.as_posix(), safe='/')}"


def storage_dirs(frame_paths: Iterable[str | Path], image_root: Path) -> list[Path]:
    """Top-level subfolders of ``image_root`` that hold the frames (one local storage each)."""
    root = image_root.resolve()
    return sorted({root / Path(path).resolve().relative_to(root).parts[0] for path in frame_paths})


def ensure_local_storages(client: LabelStudioClient, project_id: int, dirs: Sequence[Path]) -> list[Path]:
    """Connect a local-files storage for every folder not yet covered; returns the new ones."""
    covered = [Path(storage["path"]) for storage in client.local_storages(project_id) if storage.get("path")]
    created = []
    for folder in dirs:
        if any(folder == path or path in folder.parents for path in covered):
            continue
        try:
            client.create_local_storage(project_id, folder, title=f"beltcurate {folder.name}")
        except ServiceError as exc:
            raise ServiceError(
                f"Label Studio would not serve {str(folder)!r}: {exc}. Start it with "
                "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT set to "
                "labelstudio.image_root ('beltcurate labelstudio start' does both), or use labelstudio.image_base_url"
            ) from None
        covered.append(folder)
        created.append(folder)
    return created


# --------------------------------------------------------------------------------------------
# push


@dataclass
class PushSummary:
    project: str
    project_id: int
    purpose: str
    model_version: str | None
    requested: int = 0
    imported: int = 0
    already_present: int = 0  # in the catalog and on the server
    recovered: int = 0  # on the server but not in the catalog (a crash after import): adopted
    deleted_on_server: int = 0  # we pushed them, someone deleted the task: not pushed again
    duplicates_on_server: int = 0  # tasks of one frame beyond the first (imported by other tools)
    preannotated: int = 0  # imported tasks that carry a prediction
    without_preannotation: int = 0
    dropped_regions: int = 0  # predicted labels missing from the class map
    storages_created: int = 0
    import_retries: int = 0
    seconds: float = 0.0
    task_ids: dict[int, int] = field(default_factory=dict, repr=False)  # frame_id -> ls_task_id

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("task_ids")
        out["tasks_per_s"] = round(self.imported / self.seconds, 1) if self.seconds else None
        return out


def push_frames(
    catalog,
    config,
    frame_ids: Sequence[int],
    *,
    purpose: str = "label",
    selection_id: int | None = None,
    reasons: Mapping[int, str] | None = None,
    reason: str = "",
    model_version: str | None = None,
    preannotate: str | None = None,
    project_title: str | None = None,
    client: LabelStudioClient | None = None,
    advance: Callable[[int], None] | None = None,
    on_imported: Callable[[list[int]], None] | None = None,
) -> PushSummary:
    """Push frames (catalog ids) to a Label Studio project as tasks; idempotent.

    ``preannotate``: ``"predictions"`` (the detector's boxes of ``model_version``; default the
    newest model with predictions for these frames), ``"annotations"`` (the frames' current
    labels, for error correction; the default for ``purpose="relabel"``) or ``"none"``. ``reasons`` (frame id -> text; ``reason`` for
    frames not in it) is shown to the annotator. ``config``: the settings or a
    :class:`LabelStudioConfig`. ``on_imported(frame_ids)`` runs after each import call, before
    the catalog commit.
    """
    from sqlalchemy import select

    from curation.catalog import Frame, LabelTask

    started = time.perf_counter()
    config = as_config(config)
    frame_ids = list(dict.fromkeys(int(f) for f in frame_ids))
    if preannotate is None:
        preannotate = "annotations" if purpose == "relabel" else "predictions"
    if preannotate not in ("predictions", "annotations", "none"):
        raise InputError(f"unknown pre-annotation source {preannotate!r}; valid: annotations, none, predictions")
    own_client = client is None
    client = client or client_from_config(config)
    try:
        with catalog.session() as session:
            frames = _load_by_id(session, Frame, frame_ids)
            missing = [f for f in frame_ids if f not in frames]
            if missing:
                raise InputError(f"frame id(s) not in the catalog: {missing[:10]}{' ...' if len(missing) > 10 else ''}")
            if preannotate == "predictions":
                model_version, preannotations = _prediction_boxes(session, frame_ids, model_version, selection_id)
            elif preannotate == "annotations":
                model_version, preannotations = RELABEL_MODEL_VERSION, _current_annotation_boxes(session, frame_ids)
            else:
                preannotations = {}
            frame_rows = {fid: _frame_view(frames[fid]) for fid in frame_ids}
        title = project_title or (config.relabel_project if purpose == "relabel" else config.project)
        summary = PushSummary(project=title, project_id=0, purpose=purpose,
                              model_version=model_version if preannotations else None, requested=len(frame_ids))
        urls = {fid: image_url(row["path"], config) for fid, row in frame_rows.items()}
        project = ensure_project(client, title, config.class_names, summary.model_version)
        project_id = summary.project_id = int(project["id"])
        if not config.image_base_url and frame_ids:
            dirs = storage_dirs((row["path"] for row in frame_rows.values()), config.image_root)
            summary.storages_created = len(ensure_local_storages(client, project_id, dirs))

        on_server = _frames_on_server(client, project_id, summary)
        with catalog.session() as session:
            known = {task.frame_id: task for task in session.scalars(
                select(LabelTask).where(LabelTask.ls_project_id == project_id))}
            to_push = []
            for fid in frame_ids:
                task = known.get(fid)
                if fid in on_server:
                    summary.task_ids[fid] = on_server[fid]
                    if task is None:
                        session.add(LabelTask(frame_id=fid, ls_project_id=project_id, ls_task_id=on_server[fid],
                                              selection_id=selection_id, purpose=purpose, status="pushed"))
                        summary.recovered += 1
                    else:
                        if task.ls_task_id != on_server[fid]:
                            task.ls_task_id = on_server[fid]
                        if task.status == "deleted":  # the task is back (restored or re-imported elsewhere)
                            task.status = "pushed"
                        summary.already_present += 1
                elif task is not None:
                    summary.deleted_on_server += 1
                    if task.status != "deleted":
                        task.status = "deleted"
                else:
                    to_push.append(fid)
        if advance:
            advance(len(frame_ids) - len(to_push))

        names = set(config.class_names)
        for start in range(0, len(to_push), config.chunk_size):
            chunk = to_push[start:start + config.chunk_size]
            tasks = []
            for fid in chunk:
                boxes = preannotations.get(fid)
                tasks.append(_build_task(frame_rows[fid], urls[fid], boxes, names, summary, purpose=purpose,
                                         selection_id=selection_id, reason=(reasons or {}).get(fid, reason)))
            imported = _import_chunk(client, project_id, chunk, tasks, summary)
            if on_imported:
                on_imported(chunk)
            with catalog.session() as session:
                for fid, task_id in imported.items():
                    session.add(LabelTask(frame_id=fid, ls_project_id=project_id, ls_task_id=task_id,
                                          selection_id=selection_id, purpose=purpose, status="pushed"))
            summary.task_ids.update(imported)
            if advance:
                advance(len(chunk))
        # Only now do predictions of this version exist on the server (the import made them, or
        # an earlier push did); a project that has none keeps its model_version.
        if summary.model_version and (summary.preannotated or summary.recovered):
            set_model_version(client, project, summary.model_version)
        summary.seconds = round(time.perf_counter() - started, 3)
        return summary
    finally:
        if own_client:
            client.close()


def _load_by_id(session, model, ids: Sequence[int], chunk: int = 5000) -> dict[int, Any]:
    from sqlalchemy import select

    rows: dict[int, Any] = {}
    for start in range(0, len(ids), chunk):
        rows.update((row.id, row) for row in session.scalars(select(model).where(model.id.in_(ids[start:start + chunk]))))
    return rows


def _frame_view(frame) -> dict[str, Any]:
    return {
        "id": frame.id, "path": frame.path, "width": frame.width, "height": frame.height, "site": frame.site,
        "line": frame.line, "camera": frame.camera,
        "captured_at": frame.captured_at.isoformat() if frame.captured_at else None,
    }


def _prediction_boxes(session, frame_ids: Sequence[int], model_version: str | None, selection_id: int | None):
    """(model version name, {frame_id: (boxes, uncertainty)}) of one detector for these frames."""
    from sqlalchemy import func, select

    from curation.catalog import ModelVersion, Prediction, Selection
    from exporters.types import Box

    if model_version is None and selection_id is not None:
        selection = session.get(Selection, selection_id)
        if selection is not None and selection.model_version_id is not None:
            model_version = session.get(ModelVersion, selection.model_version_id).name
    if model_version is None:  # the newest model that has predictions for any of these frames
        sample = list(frame_ids[:5000])
        model_version = session.scalar(
            select(ModelVersion.name).join(Prediction, Prediction.model_version_id == ModelVersion.id)
            .where(Prediction.frame_id.in_(sample)).group_by(ModelVersion.id)
            .order_by(func.max(ModelVersion.created_at).desc(), ModelVersion.id.desc()).limit(1)
        )
        if model_version is None:
            return None, {}
    version = session.scalar(select(ModelVersion).where(ModelVersion.name == model_version))
    if version is None:
        raise InputError(f"model version {model_version!r} is not in the catalog; see 'beltcurate score'")
    out: dict[int, tuple[list, float | None]] = {}
    for start in range(0, len(frame_ids), 5000):
        for prediction in session.scalars(select(Prediction).where(
                Prediction.model_version_id == version.id, Prediction.frame_id.in_(frame_ids[start:start + 5000]))):
            out[prediction.frame_id] = ([Box.from_catalog(b) for b in prediction.boxes], prediction.uncertainty)
    return model_version, out


def _current_annotation_boxes(session, frame_ids: Sequence[int]) -> dict[int, tuple[list, None]]:
    from sqlalchemy import select

    from curation.catalog import Annotation
    from exporters.types import Box

    out: dict[int, tuple[list, None]] = {}
    for start in range(0, len(frame_ids), 5000):
        for row in session.scalars(select(Annotation).where(
                Annotation.frame_id.in_(frame_ids[start:start + 5000]), Annotation.is_current.is_(True),
                Annotation.status == "accepted")):
            out[row.frame_id] = ([Box.from_catalog(b) for b in row.boxes], None)
    return out


def _build_task(frame: dict[str, Any], url: str, preannotation, class_names: set[str], summary: PushSummary, *,
                purpose: str, selection_id: int | None, reason: str) -> dict[str, Any]:
    """One Label Studio task: our keys in ``data``, the pre-annotation in ``predictions``."""
    from exporters.labelstudio import boxes_to_ls_predictions

    task: dict[str, Any] = {"data": {
        "image": url, "frame_id": frame["id"], "site": frame["site"], "line": frame["line"],
        "camera": frame["camera"], "captured_at": frame["captured_at"], "reason": reason,
        "selection_id": selection_id, "purpose": purpose,
    }}
    if preannotation is None:
        summary.without_preannotation += 1
        return task
    boxes, uncertainty = preannotation
    kept = [box for box in boxes if box.label in class_names]
    summary.dropped_regions += len(boxes) - len(kept)
    prediction: dict[str, Any] = {
        "model_version": summary.model_version,
        "result": boxes_to_ls_predictions(kept, frame["width"], frame["height"], from_name=FROM_NAME, to_name=TO_NAME),
    }
    if uncertainty is not None:
        prediction["score"] = float(uncertainty)  # image-level: the task list can sort by it
    task["predictions"] = [prediction]
    summary.preannotated += 1
    return task


def _frames_on_server(client: LabelStudioClient, project_id: int, summary: PushSummary | None = None) -> dict[int, int]:
    """frame_id -> task id of the project's tasks that carry a frame_id (the lowest id wins)."""
    tasks, _ = client.list_tasks(project_id, include="id,data")
    on_server: dict[int, int] = {}
    for task in sorted(tasks, key=lambda t: t["id"]):
        frame_id = _task_frame_id(task)
        if frame_id is None:
            continue
        if frame_id in on_server:
            if summary is not None:
                summary.duplicates_on_server += 1
            continue
        on_server[frame_id] = int(task["id"])
    return on_server


def _task_frame_id(task: dict[str, Any]) -> int | None:
    raw = (task.get("data") or {}).get("frame_id")
    try:
        return int(raw) if raw is not None and raw != "" else None
    except (TypeError, ValueError):
        return None


def _import_chunk(client: LabelStudioClient, project_id: int, chunk: list[int], tasks: list[dict[str, Any]],
                  summary: PushSummary) -> dict[int, int]:
    """Import one chunk; after a failure in transit, re-list and send only what did not land."""
    pending = dict(zip(chunk, tasks))
    landed: dict[int, int] = {}
    for attempt in range(1, IMPORT_ATTEMPTS + 1):
        try:
            task_ids = client.import_tasks(project_id, list(pending.values()))
            landed.update(zip(pending, task_ids))
            summary.imported += len(task_ids)
            return landed
        except AuthError:
            raise
        except ServiceError:
            if attempt == IMPORT_ATTEMPTS:
                raise
            summary.import_retries += 1
            client._sleep(client.backoff_s * 2 ** (attempt - 1))
            on_server = _frames_on_server(client, project_id)
            for fid in list(pending):
                if fid in on_server:
                    landed[fid] = on_server[fid]
                    summary.imported += 1
                    del pending[fid]
            if not pending:
                return landed
    return landed


def push_selection(catalog, config, selection_id: int | None = None, **kwargs: Any) -> PushSummary:
    """Push a selection (default: the newest) with detector pre-annotations and reasons."""
    from sqlalchemy import select

    from curation.catalog import Selection, SelectionItem

    with catalog.session() as session:
        if selection_id is None:
            selection_id = session.scalar(select(Selection.id).order_by(Selection.created_at.desc(), Selection.id.desc()).limit(1))
            if selection_id is None:
                raise InputError("the catalog has no selection yet; run 'beltcurate select' first")
        elif session.get(Selection, selection_id) is None:
            raise InputError(f"selection {selection_id} does not exist; see 'beltcurate select --help'")
        items = session.execute(select(SelectionItem.frame_id, SelectionItem.reason)
                                .where(SelectionItem.selection_id == selection_id).order_by(SelectionItem.rank)).all()
    reasons = {frame_id: reason for frame_id, reason in items}
    return push_frames(catalog, config, list(reasons), selection_id=selection_id, reasons=reasons, **kwargs)


def push_relabel(catalog, config, frame_ids: Sequence[int], *,
                 reasons: Mapping[int, str] | None = None, **kwargs: Any) -> PushSummary:
    """Send frames back for relabeling (error correction, e.g. from a FiftyOne error view).

    The frames go to the relabel project (``labelstudio.relabel_project``), pre-annotated with
    their current labels so the annotator corrects rather than redraws; the next pull makes the
    corrected annotation the current one.
    """
    return push_frames(catalog, config, frame_ids, purpose="relabel", reasons=reasons, **kwargs)


# --------------------------------------------------------------------------------------------
# pull: pure rules


@dataclass(frozen=True)
class LsAnnotation:
    """One Label Studio annotation converted to our terms."""

    key: str  # Annotation.source_id: "<project>:<task>:<annotation>"
    ls_id: int
    status: str  # accepted, skipped, cancelled
    ground_truth: bool
    updated_at: dt.datetime
    boxes: tuple  # exporters.types.Box
    annotator: str | None


def annotation_status(was_cancelled: bool, n_regions: int) -> str:
    """Label Studio's "skip" is ``was_cancelled``: without regions the task was skipped; with
    regions the annotator drew and then cancelled (kept for the record, never current)."""
    if not was_cancelled:
        return "accepted"
    return "cancelled" if n_regions else "skipped"


def choose_current(annotations: Sequence[LsAnnotation]) -> tuple[LsAnnotation | None, list[dict[str, Any]]]:
    """The annotation exports use, and disagreements between the accepted ones.

    Rule: a ground-truth-flagged accepted annotation wins over others; among equals the latest
    ``updated_at`` (then the highest id) wins. Skipped/cancelled annotations never win. Every
    other accepted annotation whose boxes do not match the winner's (label + IoU >=
    AGREEMENT_IOU, one to one) is reported as a disagreement.
    """
    accepted = [a for a in annotations if a.status == "accepted"]
    if not accepted:
        return None, []
    winner = max(accepted, key=lambda a: (a.ground_truth, a.updated_at, a.ls_id))
    problems = []
    for other in accepted:
        if other is winner or boxes_agree(winner.boxes, other.boxes):
            continue
        problems.append({
            "kind": "disagreement",
            "where": f"annotation {other.ls_id}",
            "detail": f"annotation {other.ls_id} by {other.annotator or 'unknown'} ({len(other.boxes)} boxes) differs from "
                      f"the current {winner.ls_id} by {winner.annotator or 'unknown'} ({len(winner.boxes)} boxes)",
        })
    return winner, problems


def _iou_xywh(a: Sequence[float], b: Sequence[float]) -> float:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax2, bx2) - max(a[0], b[0]))
    ih = max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def boxes_agree(a: Sequence, b: Sequence, iou: float = AGREEMENT_IOU) -> bool:
    """True when the two box lists match one to one (same label, IoU >= ``iou``), greedily."""
    if len(a) != len(b):
        return False
    unmatched = list(b)
    for box in a:
        best, best_iou = None, iou
        for candidate in unmatched:
            if candidate.label != box.label:
                continue
            overlap = _iou_xywh(box.xywh_px, candidate.xywh_px)
            if overlap >= best_iou:
                best, best_iou = candidate, overlap
        if best is None:
            return False
        unmatched.remove(best)
    return True


def parse_ls_time(raw: str | None) -> dt.datetime | None:
    """Label Studio ISO time (``...Z``) -> naive UTC."""
    if not raw:
        return None
    value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return value.astimezone(dt.timezone.utc).replace(tzinfo=None) if value.tzinfo else value


# --------------------------------------------------------------------------------------------
# pull


@dataclass
class PullSummary:
    mode: str = "incremental"  # or "full" (reconcile)
    projects: list[str] = field(default_factory=list)
    tasks_seen: int = 0
    annotations_new: int = 0
    annotations_updated: int = 0
    annotations_deleted: int = 0
    tasks_deleted: int = 0
    tasks_adopted: int = 0
    labeled: int = 0  # tasks whose current annotation is accepted
    skipped: int = 0
    cancelled: int = 0
    rejected_regions: int = 0
    disagreements: int = 0
    foreign_tasks: int = 0  # tasks without our frame_id (imported by someone else): ignored
    seconds: float = 0.0
    problems: list[dict[str, Any]] = field(default_factory=list)  # first MAX_REPORTED_PROBLEMS

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["tasks_per_s"] = round(self.tasks_seen / self.seconds, 1) if self.seconds else None
        out["new_annotations"] = self.annotations_new  # the refresh's "anything new?" check
        return out


MAX_REPORTED_PROBLEMS = 50


def state_key(url: str, project_id: int) -> str:
    parts = urlsplit(url)
    return f"labelstudio.pull:{parts.hostname}:{parts.port or 80}:{project_id}"


def pull_annotations(catalog, config, *, full: bool = False, client: LabelStudioClient | None = None,
                     advance: Callable[[int], None] | None = None) -> PullSummary:
    """Pull annotations of the main and the relabel project into the catalog.

    Incremental by default (tasks updated since the previous pull); a full reconcile when
    ``full``, on the first pull and every ``labelstudio.reconcile_every``-th pull. Percent boxes
    become pixel boxes of the frame; invalid regions are dropped and recorded in
    ``Annotation.problems``; deleted annotations and tasks are marked ``deleted``.
    """
    started = time.perf_counter()
    config = as_config(config)
    summary = PullSummary()
    own_client = client is None
    client = client or client_from_config(config)
    try:
        users = None
        modes = set()
        for title in dict.fromkeys((config.project, config.relabel_project)):
            projects = client.projects_titled(title)
            if not projects:
                continue
            if users is None:
                users = client.users()
            summary.projects.append(title)
            modes.add(_pull_project(catalog, config, client, int(projects[0]["id"]), users, summary, full, advance))
        if not summary.projects:
            raise InputError(f"Label Studio at {config.url} has no project titled {config.project!r}; push a selection first")
        summary.mode = "full" if modes == {"full"} else ("incremental" if modes == {"incremental"} else "mixed")
        summary.seconds = round(time.perf_counter() - started, 3)
        return summary
    finally:
        if own_client:
            client.close()


pull = pull_annotations  # the refresh stage's name for it


def _pull_project(catalog, config: LabelStudioConfig, client: LabelStudioClient, project_id: int,
                  users: dict[int, str], summary: PullSummary, full: bool, advance) -> str:
    from sqlalchemy import select

    from curation.catalog import LabelTask

    key = state_key(config.url, project_id)
    state = catalog.get_state(key) or {}
    since_full = int(state.get("pulls_since_full", 0))
    full = full or not state.get("watermark") or (config.reconcile_every > 0 and since_full + 1 >= config.reconcile_every)
    filters = None
    if not full:
        filters = [{"filter": "filter:tasks:updated_at", "operator": "greater", "type": "Datetime",
                    "value": state["watermark"]}]
    now = client.server_now()  # before listing: whatever is saved later is seen next time
    listed, _ = client.list_tasks(project_id, include="id,updated_at", filters=filters)
    task_ids = sorted(int(task["id"]) for task in listed)
    for tasks in client.export_tasks(project_id, task_ids):
        with catalog.session() as session:
            _apply_tasks(session, project_id, tasks, users, config.class_names, summary)
        summary.tasks_seen += len(tasks)
        if advance:
            advance(len(tasks))
    if full:  # tasks we pushed that are gone from the server
        present = set(task_ids)
        with catalog.session() as session:
            gone = [task for task in session.scalars(select(LabelTask).where(LabelTask.ls_project_id == project_id))
                    if task.ls_task_id not in present and task.status != "deleted"]
            for task in gone:
                _mark_task_deleted(session, project_id, task, summary)
    watermark = (now - dt.timedelta(seconds=WATERMARK_OVERLAP_S)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    catalog.set_state(key, {"watermark": watermark, "pulls_since_full": 0 if full else since_full + 1,
                            "last_mode": "full" if full else "incremental", "project_id": project_id})
    return "full" if full else "incremental"


def _source_prefix(project_id: int, task_id: int) -> str:
    return f"{project_id}:{task_id}:"


def _mark_task_deleted(session, project_id: int, task, summary: PullSummary) -> None:
    from sqlalchemy import select

    from curation.catalog import Annotation, utcnow

    task.status = "deleted"
    task.updated_at = utcnow()
    summary.tasks_deleted += 1
    prefix = _source_prefix(project_id, task.ls_task_id)
    rows = session.scalars(select(Annotation).where(Annotation.source == SOURCE, Annotation.frame_id == task.frame_id,
                                                    Annotation.source_id.startswith(prefix)))
    for row in rows:
        if row.status != "deleted":
            row.status, row.is_current, row.updated_at = "deleted", False, utcnow()
            summary.annotations_deleted += 1
    _resolve_frames(session, [task.frame_id])


def _apply_tasks(session, project_id: int, tasks: list[dict[str, Any]], users: dict[int, str],
                 class_names: Sequence[str], summary: PullSummary) -> None:
    """Upsert the annotations of exported tasks (one transaction per export chunk)."""
    from sqlalchemy import select

    from curation.catalog import Annotation, Frame, LabelTask, utcnow
    from exporters.labelstudio import ls_result_to_boxes

    by_frame = {}
    for task in tasks:
        frame_id = _task_frame_id(task)
        if frame_id is None:
            summary.foreign_tasks += 1
            continue
        by_frame.setdefault(frame_id, []).append(task)
    frames = _load_by_id(session, Frame, list(by_frame))
    for frame_id in [f for f in by_frame if f not in frames]:
        summary.foreign_tasks += len(by_frame.pop(frame_id))
    frame_ids = list(by_frame)
    label_tasks = {}
    existing: dict[str, Any] = {}
    existing_by_task: dict[str, list] = {}  # "<project>:<task>:" -> rows
    for start in range(0, len(frame_ids), 5000):
        part = frame_ids[start:start + 5000]
        for row in session.scalars(select(LabelTask).where(LabelTask.ls_project_id == project_id, LabelTask.frame_id.in_(part))):
            label_tasks[row.frame_id] = row
        for row in session.scalars(select(Annotation).where(Annotation.source == SOURCE, Annotation.frame_id.in_(part),
                                                            Annotation.source_id.startswith(f"{project_id}:"))):
            existing[row.source_id] = row
            existing_by_task.setdefault(row.source_id.rsplit(":", 1)[0] + ":", []).append(row)
    now = utcnow()
    for frame_id, frame_tasks in by_frame.items():
        frame = frames[frame_id]
        for task in frame_tasks:
            task_id = int(task["id"])
            label_task = label_tasks.get(frame_id)
            if label_task is None:
                label_task = LabelTask(frame_id=frame_id, ls_project_id=project_id, ls_task_id=task_id,
                                       purpose=(task.get("data") or {}).get("purpose") or "label", status="pushed")
                session.add(label_task)
                label_tasks[frame_id] = label_task
                summary.tasks_adopted += 1
            # A second task of the same frame (imported by another tool) keeps the catalog's
            # first task; its annotations still count for the frame.
            prefix = _source_prefix(project_id, task_id)
            views, values_by_key = [], {}
            for ann in task.get("annotations") or []:
                source_id = f"{prefix}{int(ann['id'])}"
                results = ann.get("result") or []
                boxes, problems = ls_result_to_boxes(results, class_names, strict=False, width=frame.width,
                                                     height=frame.height, where=f"task {task_id} annotation {ann['id']}")
                problem_dicts = [p.as_dict() for p in problems]
                summary.rejected_regions += sum(1 for p in problems if p.kind != "rotated_box")
                summary.problems.extend(problem_dicts[:max(0, MAX_REPORTED_PROBLEMS - len(summary.problems))])
                status = annotation_status(bool(ann.get("was_cancelled")), len(results))
                annotator = _annotator(ann.get("completed_by"), users)
                updated_at = parse_ls_time(ann.get("updated_at")) or now
                values_by_key[source_id] = (dict(
                    frame_id=frame_id, boxes=[box.to_catalog() for box in boxes], status=status,
                    annotator=annotator, lead_time_s=ann.get("lead_time"), problems=problem_dicts,
                    updated_at=updated_at,
                ), parse_ls_time(ann.get("created_at")) or now)
                views.append(LsAnnotation(source_id, int(ann["id"]), status, bool(ann.get("ground_truth")),
                                          updated_at, tuple(boxes), annotator))
            winner, disagreements = choose_current(views)
            if winner is not None:
                values_by_key[winner.key][0]["problems"] += disagreements
                summary.disagreements += len(disagreements)
            for source_id, (values, created_at) in values_by_key.items():
                values["is_current"] = winner is not None and source_id == winner.key
                row = existing.get(source_id)
                if row is None:
                    row = Annotation(source=SOURCE, source_id=source_id, created_at=created_at, **values)
                    session.add(row)
                    existing[source_id] = row
                    existing_by_task.setdefault(prefix, []).append(row)
                    summary.annotations_new += 1
                    continue
                content_changed = any(getattr(row, k) != v for k, v in values.items() if k != "is_current")
                for k, v in values.items():
                    setattr(row, k, v)
                summary.annotations_updated += int(content_changed)
            for row in existing_by_task.get(prefix, []):  # annotations deleted in Label Studio
                if row.source_id not in values_by_key and row.status != "deleted":
                    row.status, row.is_current, row.updated_at = "deleted", False, now
                    summary.annotations_deleted += 1
            if label_task.ls_task_id == task_id:
                status = "labeled" if winner else ("skipped" if views else "pushed")
                if label_task.status != status:
                    label_task.status, label_task.updated_at = status, now
            summary.labeled += int(winner is not None)
            summary.skipped += sum(1 for v in views if v.status == "skipped")
            summary.cancelled += sum(1 for v in views if v.status == "cancelled")
    session.flush()
    _resolve_frames(session, frame_ids)


def _annotator(completed_by: Any, users: dict[int, str]) -> str | None:
    if isinstance(completed_by, dict):
        return completed_by.get("email") or completed_by.get("username") or str(completed_by.get("id"))
    if completed_by is None:
        return None
    return users.get(int(completed_by), str(completed_by))


def _resolve_frames(session, frame_ids: Sequence[int]) -> None:
    """One current annotation per frame.

    Each Label Studio task has its winner (see :func:`choose_current`); when a frame has several
    tasks (the original and a relabel task), the newest task winner is current. Without any,
    the newest accepted annotation from another source (an import) is current again.
    A task winner that lost to another task keeps no flag; should it be needed again (the
    other task's annotation was deleted), its task's newest accepted annotation stands in.
    """
    from sqlalchemy import select

    from curation.catalog import Annotation

    for start in range(0, len(frame_ids), 5000):
        rows_by_frame: dict[int, list] = {}
        for row in session.scalars(select(Annotation).where(Annotation.frame_id.in_(frame_ids[start:start + 5000]))):
            rows_by_frame.setdefault(row.frame_id, []).append(row)
        for rows in rows_by_frame.values():
            by_task: dict[str, list] = {}
            for row in rows:
                if row.source == SOURCE and row.status == "accepted":
                    by_task.setdefault(row.source_id.rsplit(":", 1)[0], []).append(row)
            task_winners = []
            for task_rows in by_task.values():
                flagged = [r for r in task_rows if r.is_current]
                task_winners.append(flagged[0] if flagged else max(task_rows, key=lambda r: (r.updated_at, r.id or 0)))
            if task_winners:
                current = max(task_winners, key=lambda r: (r.updated_at, r.id or 0))
            else:
                others = [r for r in rows if r.source != SOURCE and r.status == "accepted"]
                current = max(others, key=lambda r: (r.updated_at, r.id or 0)) if others else None
            for row in rows:
                if row.is_current != (row is current):
                    row.is_current = row is current


# --------------------------------------------------------------------------------------------
# the local server behind ``beltcurate labelstudio start|stop|status``


def _local_server(settings):
    from curation.lsserver import LabelStudioServer

    return LabelStudioServer(local_server_dir(settings))


def start_local_server(settings, *, port: int | None = None, timeout: float | None = None) -> dict[str, Any]:
    """Start Label Studio on the host/port of ``labelstudio.url`` with a preset admin and token.

    The token is ``labelstudio.token`` when set, else a generated one saved (mode 0600) in the
    server folder, where push/pull find it. Local files below ``labelstudio.image_root`` are served.
    """
    from curation.lsserver import START_TIMEOUT_S, Credentials, DEFAULT_USERNAME

    parts = urlsplit(settings["labelstudio.url"])
    if parts.hostname not in ("127.0.0.1", "localhost"):
        raise ConfigError(f"labelstudio.url {settings['labelstudio.url']!r} is not on this machine; "
                          "'beltcurate labelstudio start' runs a local server on 127.0.0.1 (set labelstudio.url to http://127.0.0.1:PORT)")
    port = port or parts.port or 80
    server = _local_server(settings)
    token = settings["labelstudio.token"]
    if token and len(token) < 6:
        raise ConfigError("labelstudio.token must have at least 6 characters for a local server (Label Studio ignores shorter ones)")
    credentials = None
    if token or not server.credentials_file.exists():
        saved = server.credentials() if server.credentials_file.exists() else None
        credentials = Credentials.generate(DEFAULT_USERNAME, token) if saved is None else Credentials(saved.username, saved.password, token or saved.token)
    image_root = settings["labelstudio.image_root"]
    server.start(port=port, credentials=credentials,
                 document_root=settings.resolve_path(image_root) if image_root else None,
                 timeout=timeout or START_TIMEOUT_S)
    # Label Studio applies a preset token only when it creates the user: a server folder made
    # with another token keeps the old one.
    with LabelStudioClient(server.url, server.credentials().token, retries=1) as client:
        try:
            client.whoami()
        except AuthError:
            raise ConfigError(
                f"the Label Studio data in {server.data_dir} was created with another API token; unset "
                "labelstudio.token to use the saved one, or stop the server and delete that folder for a fresh one"
            ) from None
    return local_server_status(settings)


def stop_local_server(settings) -> dict[str, Any]:
    server = _local_server(settings)
    stopped = server.stop()
    return {**server.status(), "stopped": stopped}


def local_server_status(settings) -> dict[str, Any]:
    return _local_server(settings).status()
