"""A throwaway PostgreSQL cluster in a folder: for `authgres dev` and the test suite.

PostgreSQL refuses to run as root, so when we are root the server programs run as the `postgres`
system user and the folder is handed to it.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
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
        command = [str(_bindir() / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)

    def _hand_over(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            for path in self.root.rglob("*"):
                shutil.chown(path, "postgres", "postgres")

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
