"""Configuration: one declarative table, read from defaults < beltcurate.toml < BELTCURATE_* env.

Every setting has a dotted name (``labelstudio.url``) that is both its TOML key (section
``[labelstudio]``, key ``url``) and its environment variable (``BELTCURATE_LABELSTUDIO_URL``).
``beltcurate config show`` prints the effective values and where each came from; secrets are
masked there and never logged.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from curation.errors import ConfigError

CONFIG_FILE_NAME = "beltcurate.toml"
ENV_PREFIX = "BELTCURATE_"


def _parse_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {raw!r} (use true/false)")


def _parse_list(raw: Any) -> list[str]:
    if isinstance(raw, (list, tuple)):
        return [str(item) for item in raw]
    return [part.strip() for part in str(raw).split(",") if part.strip()]


def _parse_optional_str(raw: Any) -> str | None:
    return None if raw is None or raw == "" else str(raw)


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str
    parse: Callable[[Any], Any] = str
    secret: bool = False

    @property
    def env_var(self) -> str:
        return ENV_PREFIX + self.name.upper().replace(".", "_")


# The one table of settings. Keep it sorted by section; the README's configuration section is
# generated from it (tests/test_docs.py fails when the two drift).
SETTINGS: tuple[Setting, ...] = (
    Setting("state_dir", ".beltcurate", "Folder for the SQLite catalog, vectors, runs and reports (relative to the config file).", str),
    Setting("catalog.url", None, "SQLAlchemy URL of the catalog; default: sqlite file in state_dir. PostgreSQL: postgresql+psycopg://user@host/db.", _parse_optional_str, secret=True),
    Setting("classes", None, "Class map file (YAML/JSON list of class names); default: the classes of the demo detector / synthetic set.", _parse_optional_str),
    # ingest
    Setting("ingest.site", "default", "Site recorded for ingested frames when --site is not given.", str),
    Setting("ingest.line", "default", "Belt line recorded for ingested frames when --line is not given.", str),
    Setting("ingest.camera", "default", "Camera recorded for ingested frames when --camera is not given.", str),
    Setting("ingest.filename_pattern", r"(?P<ts>\d{8}T\d{6}(?:\.\d+)?)", "Regex with a named group 'ts' that finds the capture time in a file path (used when EXIF has none).", str),
    Setting("ingest.timestamp_format", "%Y%m%dT%H%M%S.%f", "strptime format of the 'ts' group (a missing .%f part is tolerated).", str),
    Setting("ingest.max_pixels", 40_000_000, "Frames with more pixels are quarantined as 'huge' (decompression-bomb guard).", int),
    Setting("ingest.max_bytes", 64 * 1024 * 1024, "Files larger than this are quarantined as 'huge'.", int),
    Setting("ingest.video_stride", 15, "Keep every Nth frame of an MP4 (15 = 2 fps from a 30 fps camera).", int),
    Setting("ingest.workers", 2, "Processes that hash and decode files in parallel.", int),
    # scoring
    Setting("model.checkpoint", None, "Detector checkpoint (.pt written by 'beltcurate train' or the same layout).", _parse_optional_str),
    Setting("score.batch_size", 8, "Frames per forward pass.", int),
    Setting("score.workers", 1, "DataLoader decode workers overlapping the forward pass.", int),
    Setting("score.chunk_size", 256, "Frames per catalog commit: a crash loses at most one chunk.", int),
    Setting("score.engine", "local", "Scoring engine: local (DataLoader) or ray (Ray Data map_batches).", str),
    Setting("score.uncertainty", "entropy_sum", "Image-level uncertainty used for ranking (see 'beltcurate score --help').", str),
    Setting("score.tta_flip", False, "Also run a horizontally flipped pass and score localization stability.", _parse_bool),
    Setting("score.pca_dim", 128, "Embedding dimension used by selection (PCA; 0 = keep the native dimension).", int),
    Setting("score.store_min_score", 0.1, "Boxes under this score count for uncertainty but are not stored in the catalog.", float),
    Setting("score.ray_address", None, "--engine ray: address of a running Ray cluster (auto, ray://host:10001); default: start a local one.", _parse_optional_str),
    Setting("score.ray_actors", 2, "--engine ray: actors in the pool, each holding one copy of the model.", int),
    # selection
    Setting("select.strategy", "hybrid", "Selection strategy.", str),
    Setting("select.budget", 500, "Frames per selection.", int),
    Setting("select.seed", 0, "Random seed: the same seed and inputs give the same selection.", int),
    Setting("select.prefilter_factor", 4, "hybrid: keep the budget x this many most uncertain frames before the diversity step.", int),
    Setting("select.explore_fraction", 0.05, "hybrid: share of the budget drawn at random from the eligible pool (exploration).", float),
    Setting("select.rare_quota", 0.15, "hybrid: share of the budget reserved for frames with predicted rare classes.", float),
    Setting("select.rare_classes", ["battery"], "Classes treated as rare/hazardous by the balance step.", _parse_list),
    Setting("select.dedupe_threshold", 0.05, "Cosine distance under which two frames are near-duplicates.", float),
    Setting("select.temporal_window_s", 2.0, "Frames of one camera closer than this in time are dedupe candidates.", float),
    Setting("select.min_distance_to_labeled", 0.0, "Exclude frames closer than this (cosine distance) to a labeled frame; 0 = off.", float),
    Setting("select.diversity", "kmeans", "hybrid: diversity step over the prefiltered frames: kmeans (most uncertain frame of each of budget clusters), kcenter (farthest-first from the labeled set), kmeanspp (randomized) or none.", str),
    Setting("select.dedupe_method", "auto", "Global near-duplicate search: exact (flat), ivf (approximate) or auto (exact up to 65,536 candidates).", str),
    Setting("select.clusters", 0, "cluster: number of k-means clusters (0 = about budget/10, 2..256).", int),
    Setting("select.class_min_score", 0.3, "A predicted box counts toward its class (rare quota, balance) from this score up.", float),
    # Label Studio
    Setting("labelstudio.url", "http://127.0.0.1:8080", "Label Studio base URL.", str),
    Setting("labelstudio.token", None, "Label Studio API token (legacy token or personal access token). Secret.", _parse_optional_str, secret=True),
    Setting("labelstudio.project", "beltcurate", "Label Studio project title (created if missing).", str),
    Setting("labelstudio.image_root", None, "Folder served by Label Studio local-files storage (LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT).", _parse_optional_str),
    Setting("labelstudio.image_base_url", None, "Instead of local files: base URL under which frame paths are served (needs CORS).", _parse_optional_str),
    Setting("labelstudio.chunk_size", 500, "Tasks per import call.", int),
    Setting("labelstudio.reconcile_every", 4, "Every Nth pull is a full reconcile (catches deletions).", int),
    Setting("labelstudio.timeout_s", 120.0, "Seconds one Label Studio request may take before it counts as failed (and is retried).", float),
    Setting("labelstudio.retries", 4, "Retries of a request that failed with 5xx/429/timeout/dropped connection (backoff 0.5, 1, 2, 4 s ...).", int),
    Setting("labelstudio.relabel_project", None, "Project for frames sent back for relabeling (error correction); default: '<project> relabel'.", _parse_optional_str),
    # export
    Setting("export.dir", "datasets", "Where dataset versions are written (relative to state_dir unless absolute).", str),
    Setting("export.formats", ["coco", "yolo"], "Formats written by 'beltcurate export' and refresh.", _parse_list),
    Setting("export.split", [0.8, 0.1, 0.1], "train/val/test fractions (grouped by belt sequence).", lambda raw: [float(x) for x in _parse_list(raw)]),
    Setting("export.images", "symlink", "How images enter a version: symlink, hardlink or copy.", str),
    Setting("export.on_bad", "drop", "Frames with bad input (missing image, box outside, unknown class): drop them (listed in problems.jsonl) or fail.", str),
    Setting("export.group_gap_s", 30.0, "Frames of one camera/sequence closer in time than this share a split group (never straddle train/val/test).", float),
    Setting("export.seed", 0, "Seed of the split assignment: same labels and seed give the same splits.", int),
    # refresh
    Setting("refresh.inputs", [], "Folders refresh ingests each run (comma-separated in the environment).", _parse_list),
    Setting("refresh.site_from_path", True, "refresh: folders under each input are <site>/<camera>/... (see 'ingest --site-from-path').", _parse_bool),
    Setting("refresh.version_prefix", "v", "Dataset versions made by refresh are named <prefix>0001, <prefix>0002, ...", str),
    # review
    Setting("review.dataset", "beltcurate", "FiftyOne dataset name.", str),
    Setting("review.port", 5151, "Port of the FiftyOne app (bound to 127.0.0.1).", int),
    Setting("review.database_name", "beltcurate", "FiftyOne database name (FIFTYONE_DATABASE_NAME) inside MongoDB.", str),
    Setting("review.mongo_uri", None, "MongoDB URI for FiftyOne; default: a mongod beltcurate runs on 127.0.0.1 with data in state_dir/fiftyone-db.", _parse_optional_str, secret=True),
    Setting("review.mongo_port", 0, "Port of the mongod beltcurate runs (0 = any free port).", int),
    Setting("review.max_unlabeled", 2000, "Unlabeled frames added to the review dataset (the most uncertain first; selected frames always).", int),
    Setting("review.fp_min_confidence", 0.3, "Lowest confidence shown in the false-positives view (confident mistakes first).", float),
    Setting("review.low_iou", 0.75, "Matched boxes below this IoU appear in the poorly-localized view (matching needs IoU >= 0.5).", float),
)

SETTINGS_BY_NAME: dict[str, Setting] = {setting.name: setting for setting in SETTINGS}


@dataclass(frozen=True)
class Value:
    value: Any
    source: str  # "default", "file:<path>", "env:<VAR>" or "override"


class Settings:
    """Effective settings; ``settings["select.budget"]`` returns the parsed value."""

    def __init__(self, values: dict[str, Value], config_path: Path | None, base_dir: Path):
        self._values = values
        self.config_path = config_path
        self.base_dir = base_dir

    def __getitem__(self, name: str) -> Any:
        if name not in self._values:
            raise ConfigError(f"unknown setting {name!r}; see 'beltcurate config show'")
        return self._values[name].value

    def source(self, name: str) -> str:
        return self._values[name].source

    def with_overrides(self, **overrides: Any) -> "Settings":
        """A copy with some values replaced (CLI options); keys use '__' for '.'."""
        values = dict(self._values)
        for key, raw in overrides.items():
            if raw is None:
                continue
            name = key.replace("__", ".")
            values[name] = Value(_parse(SETTINGS_BY_NAME[name], raw, "override"), "override")
        return Settings(values, self.config_path, self.base_dir)

    @property
    def state_dir(self) -> Path:
        return self.resolve_path(self["state_dir"])

    def resolve_path(self, raw: str | os.PathLike) -> Path:
        path = Path(raw).expanduser()
        return path if path.is_absolute() else (self.base_dir / path)

    @property
    def catalog_url(self) -> str:
        url = self["catalog.url"]
        if url:
            return url
        return f"sqlite:///{self.state_dir / 'catalog.sqlite'}"

    def rows(self) -> list[dict[str, Any]]:
        """Effective values for display; secrets are masked."""
        out = []
        for setting in SETTINGS:
            value = self._values[setting.name]
            shown = value.value
            if setting.secret and shown:
                shown = mask(str(shown))
            out.append({"name": setting.name, "value": shown, "source": value.source, "help": setting.help})
        return out


def mask(secret: str) -> str:
    """Never show a secret; for URLs keep the scheme and host so the user can tell them apart."""
    if "://" in secret and "@" in secret:
        scheme, rest = secret.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    if "://" in secret:
        return secret
    return "***"


def _parse(setting: Setting, raw: Any, source: str) -> Any:
    if raw is None:
        return None
    try:
        return setting.parse(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {setting.name} from {source}: {exc} (got {raw!r})") from None


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, prefix=name + "."))
        else:
            flat[name] = value
    return flat


def find_config(explicit: str | os.PathLike | None, env: Mapping[str, str]) -> Path | None:
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist; create it or drop --config")
        return path
    if env.get(ENV_PREFIX + "CONFIG"):
        return find_config(env[ENV_PREFIX + "CONFIG"], {})
    candidate = Path.cwd() / CONFIG_FILE_NAME
    return candidate if candidate.is_file() else None


def load_settings(config: str | os.PathLike | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read defaults, then the TOML file (if any), then ``BELTCURATE_*`` variables."""
    env = os.environ if env is None else env
    path = find_config(config, env)
    file_values: dict[str, Any] = {}
    if path is not None:
        try:
            file_values = _flatten(tomllib.loads(path.read_text()))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
        unknown = sorted(set(file_values) - set(SETTINGS_BY_NAME))
        if unknown:
            raise ConfigError(
                f"config file {str(path)!r} has unknown settings: {', '.join(unknown)}; "
                "see 'beltcurate config show' for the valid names"
            )
    values: dict[str, Value] = {}
    for setting in SETTINGS:
        value = Value(setting.default, "default")
        if setting.name in file_values:
            source = f"file:{path}"
            value = Value(_parse(setting, file_values[setting.name], source), source)
        if setting.env_var in env:
            source = f"env:{setting.env_var}"
            value = Value(_parse(setting, env[setting.env_var], source), source)
        values[setting.name] = value
    base_dir = path.parent.resolve() if path is not None else Path.cwd()
    return Settings(values, path, base_dir)
