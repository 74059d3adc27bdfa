"""A throwaway PostgreSQL cluster in a folder: for `authgres dev` and the test suite.

PostgreSQL refuses to run as root, so when we are root the server programs run as the `postgres`
system user and the folder is handed to it.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from psycopg.conninfo import make_conninfo


def _bindir() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if not candidates:
        raise RuntimeError("PostgreSQL server binaries (pg_ctl, initdb) not found; install PostgreSQL 15 or newer")
    return Path(candidates[-1]).parent


@dataclass(frozen=True)
class LocalCluster:
    root: Path
    port: int = 54329
    listen_tcp: bool = False

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    def conninfo(self, user: str = "postgres", dbname: str = "postgres") -> str:
        return make_conninfo(host=str(self.socket_dir), port=self.port, user=user, dbname=dbname)

    def url(self, user: str = "postgres", dbname: str = "postgres") -> str:
        return f"postgresql://{user}@/{dbname}?host={self.socket_dir}&port={self.port}"

    def _run(self, *args: str) -> None:
        subprocess.run(_as_postgres([str(_bindir() / args[0]), *args[1:]]), check=True, stdout=subprocess.DEVNULL)

    def _hand_over(self) -> None:
        _hand_over(self.root)

    def is_running(self) -> bool:
        return (self.data_dir / "postmaster.pid").exists() and (self.socket_dir / f".s.PGSQL.{self.port}").exists()

    def start(self, *, durable: bool = True) -> None:
        """Creates the cluster on first use, then starts it (a no-op when it already runs)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        self._hand_over()
        if not (self.data_dir / "PG_VERSION").exists():
            initdb = ["initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
            self._run(*initdb, "--no-instructions", *([] if durable else ["--no-sync"]))
        if self.is_running():
            return
        options = [
            f"-k {self.socket_dir}",
            f"-p {self.port}",
            "-c listen_addresses=" + ("127.0.0.1" if self.listen_tcp else "''"),
            "-c max_connections=200",
        ]
        if not durable:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        log = self.root / "postgres.log"
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(log), "-w", "-o", " ".join(options), "start")

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")

    def restart(self) -> None:
        """Stops (ending every session) and starts again with the same options, as a failover would."""
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "restart")


@dataclass(frozen=True)
class LocalPgBouncer:
    """PgBouncer in front of a LocalCluster, for tests and benchmarks: every database of the cluster, any
    user it trusts, on a loopback port. pool_mode is what production poolers use: transaction."""

    root: Path
    cluster: LocalCluster
    port: int
    users: tuple[str, ...] = ("postgres", "authgres_service", "app_login")
    pool_mode: str = "transaction"

    def url(self, user: str, dbname: str) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    def conninfo(self, user: str, dbname: str) -> str:
        return make_conninfo(host="127.0.0.1", port=self.port, user=user, dbname=dbname)

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "userlist.txt").write_text("".join(f'"{user}" ""\n' for user in self.users))
        (self.root / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={self.cluster.socket_dir} port={self.cluster.port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.root / 'userlist.txt'}\n"
            f"pool_mode = {self.pool_mode}\nmax_client_conn = 1000\ndefault_pool_size = 20\n"
            # After a failed server login PgBouncer refuses every client for this long (default 15 s):
            # a database restart would then cost 15 s more than it takes.
            "server_login_retry = 1\n"
            f"logfile = {self.root / 'pgbouncer.log'}\npidfile = {self.root / 'pgbouncer.pid'}\n"
        )
        _hand_over(self.root)  # PgBouncer, like PostgreSQL, refuses to run as root
        subprocess.run(_as_postgres([_pgbouncer(), "-d", str(self.root / "pgbouncer.ini")]), check=True)
        _wait_until(lambda: _accepts(self.port), what=f"pgbouncer on port {self.port}")

    def stop(self) -> None:
        pidfile = self.root / "pgbouncer.pid"
        if pidfile.exists():
            subprocess.run(["kill", pidfile.read_text().strip()], check=False)
            _wait_until(lambda: not pidfile.exists(), what="pgbouncer to stop")


def _as_postgres(command: list[str]) -> list[str]:
    """The command, run as the `postgres` system user when we are root."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _hand_over(root: Path) -> None:
    """Gives the folder and what it holds to the `postgres` system user when we are root."""
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        for path in root.rglob("*"):
            shutil.chown(path, "postgres", "postgres")


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait_until(ready: Callable[[], bool], *, what: str, seconds: float = 10) -> None:
    """Polls for a process to be ready (a daemon gives no other signal), for a bounded time."""
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _pgbouncer() -> str:
    found = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None)
    if not found:
        raise RuntimeError("pgbouncer not found; install it (Debian: apt-get install pgbouncer)")
    return found
