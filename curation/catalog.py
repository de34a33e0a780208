"""The catalog: SQLAlchemy 2.x models of everything beltcurate knows, and how to open it.

Contracts:
- boxes are stored as JSON lists of ``{"xywh_px": [x, y, w, h], "label": "battery", ...}`` in
  absolute pixels of the *oriented* frame (after EXIF rotation), top-left origin (COCO);
- every stage writes idempotently: unique constraints make a rerun a no-op, never a duplicate;
- the schema is owned by Alembic (``curation/migrations``) and upgraded automatically on open.
"""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from curation.errors import CatalogError


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Frame(Base):
    """One unique image (by content hash). Frames from video get ``source_frame_index``."""

    __tablename__ = "frames"
    id: Mapped[int] = mapped_column(primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    path: Mapped[str] = mapped_column(Text)  # absolute path of the first copy seen
    width: Mapped[int] = mapped_column(Integer)  # after EXIF orientation
    height: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(16))
    size_bytes: Mapped[int] = mapped_column(Integer)
    exif_orientation: Mapped[int] = mapped_column(Integer, default=1)
    site: Mapped[str] = mapped_column(String(128), index=True)
    line: Mapped[str] = mapped_column(String(128))
    camera: Mapped[str] = mapped_column(String(128), index=True)
    captured_at: Mapped[dt.datetime | None] = mapped_column(DateTime, index=True)
    sequence: Mapped[str | None] = mapped_column(String(256))  # belt sequence / video id, if known
    source_frame_index: Mapped[int | None] = mapped_column(Integer)  # frame number inside a video
    ingested_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Quarantine(Base):
    """A file that could not be ingested, with the reason; never deleted, never retried silently."""

    __tablename__ = "quarantine"
    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(Text, unique=True)
    content_hash: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(32))  # zero_byte, truncated, not_image, huge, unreadable
    detail: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class ModelVersion(Base):
    __tablename__ = "model_versions"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)  # the model_version string
    arch: Mapped[str] = mapped_column(String(64))
    checkpoint_path: Mapped[str | None] = mapped_column(Text)
    checkpoint_hash: Mapped[str | None] = mapped_column(String(64))
    classes: Mapped[list[Any]] = mapped_column(JSON)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class ScoringRun(Base):
    __tablename__ = "scoring_runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    engine: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="running")  # running, done, failed
    n_frames: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Prediction(Base):
    """A detector's output on one frame: boxes plus image-level uncertainty scores."""

    __tablename__ = "predictions"
    __table_args__ = (UniqueConstraint("frame_id", "model_version_id", name="uq_prediction_frame_model"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    frame_id: Mapped[int] = mapped_column(ForeignKey("frames.id"), index=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    scoring_run_id: Mapped[int | None] = mapped_column(ForeignKey("scoring_runs.id"))
    boxes: Mapped[list[Any]] = mapped_column(JSON)  # [{"xywh_px", "label", "score", "probs"?}]
    scores: Mapped[dict[str, Any]] = mapped_column(JSON)  # named image-level uncertainty scores
    uncertainty: Mapped[float] = mapped_column(Float)  # the configured ranking score, higher = more uncertain
    embedding_row: Mapped[int | None] = mapped_column(Integer)  # row in the vector store of this model version
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Selection(Base):
    __tablename__ = "selections"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    strategy: Mapped[str] = mapped_column(String(32))
    budget: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer)
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    items: Mapped[list["SelectionItem"]] = relationship(back_populates="selection", order_by="SelectionItem.rank")


class SelectionItem(Base):
    __tablename__ = "selection_items"
    __table_args__ = (UniqueConstraint("selection_id", "frame_id", name="uq_selection_item_frame"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    selection_id: Mapped[int] = mapped_column(ForeignKey("selections.id"), index=True)
    frame_id: Mapped[int] = mapped_column(ForeignKey("frames.id"), index=True)
    rank: Mapped[int] = mapped_column(Integer)
    score: Mapped[float | None] = mapped_column(Float)
    uncertainty: Mapped[float | None] = mapped_column(Float)
    distance_to_labeled: Mapped[float | None] = mapped_column(Float)
    cluster: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    selection: Mapped[Selection] = relationship(back_populates="items")


class LabelTask(Base):
    """A frame pushed to a Label Studio project; unique per (project, frame)."""

    __tablename__ = "label_tasks"
    __table_args__ = (UniqueConstraint("ls_project_id", "frame_id", name="uq_label_task_project_frame"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    frame_id: Mapped[int] = mapped_column(ForeignKey("frames.id"), index=True)
    ls_project_id: Mapped[int] = mapped_column(Integer)
    ls_task_id: Mapped[int] = mapped_column(Integer, index=True)
    selection_id: Mapped[int | None] = mapped_column(ForeignKey("selections.id"))
    purpose: Mapped[str] = mapped_column(String(16), default="label")  # label, relabel
    status: Mapped[str] = mapped_column(String(16), default="pushed")  # pushed, labeled, skipped, deleted
    pushed_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class Annotation(Base):
    """Ground truth for a frame from one source; ``is_current`` marks the one exports use."""

    __tablename__ = "annotations"
    __table_args__ = (UniqueConstraint("source", "source_id", name="uq_annotation_source"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    frame_id: Mapped[int] = mapped_column(ForeignKey("frames.id"), index=True)
    source: Mapped[str] = mapped_column(String(32))  # labelstudio, import:<name>, synth
    source_id: Mapped[str] = mapped_column(String(128))  # LS annotation id, or file + index for imports
    boxes: Mapped[list[Any]] = mapped_column(JSON)  # [{"xywh_px": [...], "label": "..."}]
    status: Mapped[str] = mapped_column(String(16), default="accepted")  # accepted, skipped, cancelled, deleted
    is_current: Mapped[bool] = mapped_column(Boolean, default=True, index=True)
    annotator: Mapped[str | None] = mapped_column(String(256))
    lead_time_s: Mapped[float | None] = mapped_column(Float)
    problems: Mapped[list[Any]] = mapped_column(JSON, default=list)  # rejected regions, disagreements
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class DatasetVersion(Base):
    __tablename__ = "dataset_versions"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("dataset_versions.id"))
    path: Mapped[str] = mapped_column(Text)
    formats: Mapped[list[Any]] = mapped_column(JSON)
    n_frames: Mapped[int] = mapped_column(Integer)
    n_boxes: Mapped[int] = mapped_column(Integer)
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    filters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Run(Base):
    """One CLI invocation (or refresh): what ran, how it ended, counts per stage."""

    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    command: Mapped[str] = mapped_column(String(64))
    args: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="running")  # running, success, failed, nothing_to_do
    stages: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    pid: Mapped[int | None] = mapped_column(Integer)
    host: Mapped[str | None] = mapped_column(String(256))
    started_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class Lock(Base):
    """A named lock held by one process (refresh); stale locks of dead processes are taken over."""

    __tablename__ = "locks"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner_pid: Mapped[int] = mapped_column(Integer)
    host: Mapped[str] = mapped_column(String(256))
    run_id: Mapped[int | None] = mapped_column(Integer)
    acquired_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class KeyValue(Base):
    """Small persistent state (e.g. the time of the last Label Studio pull)."""

    __tablename__ = "state"
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _alembic_config(engine: Engine):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply Alembic migrations up to ``revision`` (idempotent)."""
    from alembic import command

    command.upgrade(_alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    config = _alembic_config(None)  # type: ignore[arg-type]
    return ScriptDirectory.from_config(config).get_current_head()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Writers wait instead of failing while another process (a second CLI call) commits.
        kwargs["connect_args"] = {"timeout": 60}
    try:
        engine = create_engine(url, **kwargs)
    except Exception as exc:  # sqlalchemy raises several types for a malformed URL
        raise CatalogError(f"cannot open catalog {url.split('@')[-1]!r}: {exc}") from exc
    if url.startswith("sqlite"):
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the scoring writer
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class Catalog:
    """The catalog database: an engine plus a session factory, migrated to head on open."""

    def __init__(self, url: str, *, migrate: bool = True):
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        if migrate:
            try:
                upgrade(self.engine)
            except Exception as exc:
                from sqlalchemy.exc import OperationalError

                if isinstance(exc, OperationalError):
                    raise CatalogError(
                        f"cannot reach the catalog at {url.split('@')[-1]!r}: {exc.orig}; "
                        "check catalog.url (BELTCURATE_CATALOG_URL)"
                    ) from exc
                raise

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed on success and rolled back on any error."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def get_state(self, key: str, default: Any = None) -> Any:
        with self.session() as session:
            row = session.get(KeyValue, key)
            return default if row is None else row.value

    def set_state(self, key: str, value: Any) -> None:
        with self.session() as session:
            row = session.get(KeyValue, key)
            if row is None:
                session.add(KeyValue(key=key, value=value))
            else:
                row.value = value

    def dispose(self) -> None:
        self.engine.dispose()


def open_catalog(settings) -> Catalog:
    """The catalog named by the settings (``catalog.url`` or the SQLite file in ``state_dir``)."""
    return Catalog(settings.catalog_url)


def frame_by_hash(session: Session, content_hash: str) -> Frame | None:
    return session.scalar(select(Frame).where(Frame.content_hash == content_hash))
