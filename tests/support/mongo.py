"""A private mongod on 127.0.0.1 for tests that use FiftyOne (the product's ``curation.fomongo.Mongod``
in a temp folder).

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
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path


def start_fiftyone_database() -> dict[str, str]:
    """Start a private mongod, point FiftyOne at it via the environment, stop it at exit.

    Must run before ``fiftyone`` is imported in this process. Returns the variables it set.
    """
    from curation.fomongo import Mongod, configure_fiftyone_env

    if "fiftyone" in sys.modules:
        raise RuntimeError(
            "fiftyone was imported before the test database was set up; import fiftyone only inside "
            "tests that use the fiftyone_env fixture"
        )
    root = Path(tempfile.mkdtemp(prefix="beltcurate-mongod-"))
    server = Mongod(root).start()

    def stop() -> None:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)

    atexit.register(stop)  # registered before fiftyone's own hook, so it runs after it
    env = configure_fiftyone_env(server.uri, f"beltcurate_test_{os.getpid()}_{uuid.uuid4().hex[:8]}", {})
    env["FIFTYONE_SHOW_PROGRESS_BARS"] = "false"
    os.environ.update(env)
    return env
