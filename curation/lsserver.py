"""A local Label Studio server: start, wait for health, stop by PID (tests, demo, CI).

Label Studio runs from its own virtualenv (``.venv-labelstudio``, see ``make labelstudio-venv``)
because it pins Django and many libraries of its own. Everything here is standard library so
``python -m curation.lsserver`` and ``scripts/labelstudio.sh`` work before the main imports do.

A server lives in one folder::

    <dir>/data/              LABEL_STUDIO_BASE_DATA_DIR (SQLite database, media, exports)
    <dir>/server.json        pid, url, port, state ("starting", "up", "failed"), log path
    <dir>/launcher.pid       pid of a background launcher (``start --background``)
    <dir>/credentials.json   username, password, token (mode 0600; never printed)
    <dir>/server.log         the server's stdout and stderr

The first start on an empty data dir spends most of its time in Django migrations. They run
once per Label Studio version into a template folder (``label-studio init``), which is copied for
every fresh server: a fresh server is then up in seconds instead of minutes.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curation.errors import ServiceError
from curation.processes import pid_alive

REPO = Path(__file__).resolve().parent.parent
DEFAULT_VENV = REPO / ".venv-labelstudio"
DEFAULT_USERNAME = "admin@beltcurate.local"
# Seconds to wait for /health. A fresh copy of a migrated template is up in ~8-20 s on 2 busy
# cores; the one-off template migration (inside the first start) takes ~30-90 s more.
START_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 15.0
# Plain variables Label Studio also reads (HOST, PORT, ...) leak in from shells and CI; they
# would override what we pass.
_LEAKY_ENV = ("HOST", "PORT", "USERNAME", "PASSWORD", "USER_TOKEN", "DJANGO_DB", "DATABASE_NAME")


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    token: str

    def __repr__(self) -> str:  # never show secrets in logs or tracebacks
        return f"Credentials(username={self.username!r}, password='***', token='***')"

    @classmethod
    def generate(cls, username: str = DEFAULT_USERNAME, token: str | None = None) -> "Credentials":
        return cls(username, secrets.token_urlsafe(12), token or secrets.token_hex(20))


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def health(url: str, timeout: float = 2.0) -> bool:
    """True when ``GET <url>/health`` answers ``{"status": "UP"}``."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=timeout) as response:
            return json.loads(response.read() or b"{}").get("status") == "UP"
    except (OSError, ValueError):
        return False


def installed_version(venv: Path) -> str:
    """The label-studio version installed in ``venv`` (from its dist-info folder)."""
    found = sorted(venv.glob("lib/python*/site-packages/label_studio-*.dist-info"))
    if not found or not (venv / "bin" / "label-studio").exists():
        raise ServiceError(f"Label Studio is not installed in {str(venv)!r}; run 'make labelstudio-venv'")
    return found[-1].name.removeprefix("label_studio-").removesuffix(".dist-info")


def template_dir(version: str) -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "beltcurate" / f"labelstudio-{version}-template"


def _server_env(data_dir: Path, credentials: Credentials | None, document_root: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _LEAKY_ENV and not k.startswith("LABEL_STUDIO_")}
    env.update(
        LABEL_STUDIO_BASE_DATA_DIR=str(data_dir),
        LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",  # else the preset token gets 401 in a new org
        LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK="true",
        LABEL_STUDIO_COLLECT_ANALYTICS="false",
        LABEL_STUDIO_LATEST_VERSION_CHECK="false",
        LABEL_STUDIO_SENTRY_DSN="",  # Sentry is on by default
        LABEL_STUDIO_FRONTEND_SENTRY_DSN="",
        PYTHONUNBUFFERED="1",
    )
    if credentials is not None:
        env.update(
            LABEL_STUDIO_USERNAME=credentials.username,
            LABEL_STUDIO_PASSWORD=credentials.password,
            LABEL_STUDIO_USER_TOKEN=credentials.token,  # applied only when the user is created
        )
    if document_root is not None:
        env.update(
            LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED="true",
            LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=str(document_root),
        )
    return env


def ensure_template(venv: Path = DEFAULT_VENV, *, log=None) -> Path:
    """A migrated, user-less Label Studio data dir for this version (built once, then cached)."""
    version = installed_version(venv)
    target = template_dir(version)
    if (target / "label_studio.sqlite3").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second caller waits, then finds the template
        if (target / "label_studio.sqlite3").exists():
            return target
        building = target.parent / f"{target.name}.building-{os.getpid()}"
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir()
        result = subprocess.run(
            [str(venv / "bin" / "label-studio"), "init", "-q"],
            env=_server_env(building, None, None), cwd=building,
            stdout=log or subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        if result.returncode != 0 or not (building / "label_studio.sqlite3").exists():
            tail = (result.stdout or "")[-2000:]
            raise ServiceError(f"'label-studio init' failed (exit {result.returncode}) in {building}: {tail}")
        (building / ".env").unlink(missing_ok=True)  # holds SECRET_KEY: every copy makes its own
        building.rename(target)
    return target


class LabelStudioServer:
    """One local server in ``root`` (see the module docstring for the layout)."""

    def __init__(self, root: str | os.PathLike, *, venv: str | os.PathLike = DEFAULT_VENV):
        self.root = Path(root).resolve()
        self.venv = Path(venv)

    # -- files ----------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def state_file(self) -> Path:
        return self.root / "server.json"

    @property
    def credentials_file(self) -> Path:
        return self.root / "credentials.json"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    @property
    def launcher_pid_file(self) -> Path:
        return self.root / "launcher.pid"

    def state(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}

    def _write_state(self, **fields: Any) -> None:
        state = self.state()
        state.update(fields)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
        tmp.replace(self.state_file)

    def credentials(self) -> Credentials:
        try:
            data = json.loads(self.credentials_file.read_text())
            return Credentials(data["username"], data["password"], data["token"])
        except (OSError, ValueError, KeyError) as exc:
            raise ServiceError(f"no readable credentials in {self.credentials_file} ({exc}); start the server first") from None

    def _save_credentials(self, credentials: Credentials) -> None:
        fd = os.open(self.credentials_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"username": credentials.username, "password": credentials.password, "token": credentials.token}, fh)

    # -- status ---------------------------------------------------------------------------
    @property
    def url(self) -> str | None:
        return self.state().get("url")

    @property
    def pid(self) -> int | None:
        return self.state().get("pid")

    def is_running(self) -> bool:
        pid = self.pid
        return pid_alive(pid) and "label-studio" in _cmdline(pid)

    def launcher_running(self) -> bool:
        try:
            pid = int(self.launcher_pid_file.read_text())
        except (OSError, ValueError):
            return False
        return pid_alive(pid) and "curation.lsserver" in _cmdline(pid)

    def is_up(self) -> bool:
        return self.is_running() and bool(self.url) and health(self.url)

    def status(self) -> dict[str, Any]:
        state = self.state()
        return {
            "root": str(self.root),
            "url": state.get("url"),
            "pid": state.get("pid"),
            "running": self.is_running(),
            "up": self.is_up(),
            "state": state.get("state", "absent"),
            "username": state.get("username"),
            "credentials_file": str(self.credentials_file),
            "log": str(self.log_file),
            "version": state.get("version"),
        }

    # -- start / stop ---------------------------------------------------------------------
    def start(
        self,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        credentials: Credentials | None = None,
        document_root: str | os.PathLike | None = None,
        wait: bool = True,
        timeout: float = START_TIMEOUT_S,
    ) -> "LabelStudioServer":
        """Start the server (a no-op when it is already up); wait for ``/health`` if ``wait``.

        ``port=None`` picks a free port. A busy port is an error: Label Studio would silently
        take the next one. ``credentials`` (default: reuse the saved ones or generate new) preset
        the admin user; its token is valid for the API (legacy token auth is enabled).
        ``document_root`` enables local-files serving below that folder.
        """
        if self.is_running():
            if wait:
                self.wait_healthy(timeout)
            return self
        self.root.mkdir(parents=True, exist_ok=True)
        version = installed_version(self.venv)
        port = port or free_port(host)
        if not port_is_free(host, port):
            raise ServiceError(
                f"port {port} on {host} is already in use; stop what listens there or choose another port "
                "(labelstudio.url / --port)"
            )
        fresh = not (self.data_dir / "label_studio.sqlite3").exists()
        saved = self.credentials() if self.credentials_file.exists() else None
        if credentials is None:
            credentials = saved or Credentials.generate()
        elif not fresh and saved is not None and (saved.username, saved.token) != (credentials.username, credentials.token):
            # Label Studio applies a preset user and token only when it creates the user.
            raise ServiceError(
                f"the Label Studio data in {self.data_dir} was created with another user or API token; start it "
                "without one (the saved credentials are used), or delete that folder for a fresh server"
            )
        self._save_credentials(credentials)
        self._write_state(state="starting", url=f"http://{host}:{port}", port=port, pid=None,
                          username=credentials.username, version=version, log=str(self.log_file),
                          document_root=str(document_root) if document_root else None)
        with open(self.log_file, "a") as log:
            try:
                if fresh:
                    template = ensure_template(self.venv, log=log)
                    shutil.rmtree(self.data_dir, ignore_errors=True)
                    shutil.copytree(template, self.data_dir)
                root = Path(document_root).resolve() if document_root else None
                process = subprocess.Popen(
                    [str(self.venv / "bin" / "label-studio"), "start", "--no-browser",
                     "--internal-host", host, "--port", str(port)],
                    env=_server_env(self.data_dir, credentials, root), cwd=self.root,
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True,  # its own process group: stop() ends it and its children
                )
            except BaseException as exc:
                self._write_state(state="failed", error=str(exc))
                raise
        self._write_state(pid=process.pid, started_at=time.time())
        if wait:
            self.wait_healthy(timeout)
        return self

    def start_background(self, **kwargs: Any) -> int:
        """Start the server from a detached launcher process and return at once (its pid).

        Used by ``make test`` so the template migration and server start overlap other set-up;
        :meth:`attach` waits for it later.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        if self.is_running() or self.launcher_running():
            return 0
        args = [sys.executable, "-m", "curation.lsserver", "start", str(self.root), "--venv", str(self.venv)]
        if kwargs.get("port"):
            args += ["--port", str(kwargs["port"])]
        if kwargs.get("document_root"):
            args += ["--document-root", str(kwargs["document_root"])]
        self.state_file.unlink(missing_ok=True)
        with open(self.root / "launcher.log", "a") as log:
            process = subprocess.Popen(args, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        self.launcher_pid_file.write_text(str(process.pid))
        return process.pid

    def wait_healthy(self, timeout: float = START_TIMEOUT_S) -> None:
        """Wait until the started process answers ``/health``; fail early if it exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.state()
            if state.get("state") == "failed":
                raise ServiceError(f"Label Studio in {self.root} failed to start: {state.get('error')}; see {self.log_file}")
            if not state.get("pid"):
                raise ServiceError(f"no Label Studio server was started in {self.root}; start one first")
            if not self.is_running():
                self._write_state(state="failed", error="process exited")
                raise ServiceError(f"Label Studio exited during start-up; last log lines:\n{self.log_tail()}")
            if health(state["url"]):
                if state.get("state") != "up":
                    self._write_state(state="up")
                return
            time.sleep(0.5)
        raise ServiceError(f"Label Studio in {self.root} not healthy after {timeout:.0f} s; see {self.log_file}")

    def attach(self, timeout: float = START_TIMEOUT_S) -> bool:
        """Wait for a server that is running or being launched here; False when there is none."""
        if not (self.is_running() or self.launcher_running()):
            return False
        deadline = time.monotonic() + timeout
        while not self.state().get("pid"):  # the launcher is still building the template
            if not self.launcher_running() and not self.state().get("pid"):
                if self.state().get("state") == "failed":
                    raise ServiceError(f"background Label Studio start failed: {self.state().get('error')}")
                return False
            if time.monotonic() > deadline:
                raise ServiceError(f"background Label Studio launcher in {self.root} still busy after {timeout:.0f} s")
            time.sleep(0.5)
        self.wait_healthy(max(1.0, deadline - time.monotonic()))
        return True

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> bool:
        """Stop the server started in this folder (SIGTERM, then SIGKILL). True if one was running."""
        pid = self.pid if self.is_running() else None
        if pid:
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + timeout
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if pid_alive(pid):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:  # reap it when it is our child (started by start() in this process)
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        if self.state_file.exists():
            self._write_state(state="stopped", pid=None)
        return bool(pid)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m curation.lsserver", description="Run a local Label Studio server.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("start", "stop", "status"):
        cmd = sub.add_parser(name)
        cmd.add_argument("dir", help="server folder (data, pid file, credentials, log)")
        cmd.add_argument("--venv", default=str(DEFAULT_VENV))
        if name == "start":
            cmd.add_argument("--port", type=int, help="port on 127.0.0.1 (default: a free one)")
            cmd.add_argument("--document-root", help="enable local-files serving below this folder")
            cmd.add_argument("--background", action="store_true", help="return at once; the server starts detached")
            cmd.add_argument("--timeout", type=float, default=START_TIMEOUT_S)
    args = parser.parse_args(argv)
    server = LabelStudioServer(args.dir, venv=args.venv)
    try:
        if args.command == "start":
            if args.background:
                pid = server.start_background(port=args.port, document_root=args.document_root)
                print(f"Label Studio starting in the background in {server.root} (launcher pid {pid or 'already running'})")
                return 0
            server.start(port=args.port, document_root=args.document_root, timeout=args.timeout)
            status = server.status()
            print(f"Label Studio up at {status['url']} (pid {status['pid']}); login {status['username']}, "
                  f"password and token in {status['credentials_file']}")
        elif args.command == "stop":
            print("stopped" if server.stop() else "not running")
        else:
            print(json.dumps(server.status(), indent=2))
    except ServiceError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
