"""authgres benchmarks: prints figures and the ratios the project targets, all taken in one run.

    make bench        (or: .venv/bin/python bench/run.py [--seconds N])

Load comes from C tools on loopback (wrk for HTTP, pgbench for SQL), so the Python under test is not
also the load generator. The server runs as `authgres serve` in its own process against a throwaway
PostgreSQL cluster. This is a benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import argon2
import psycopg

from authgres.argon2_build import DISTRIBUTION, build_info
from authgres.localpg import LocalCluster, LocalPgBouncer, _bindir
from authgres.settings import Settings

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SECRET = "bench-secret-bench-secret-bench-secret-0123"
PASSWORD = "correct horse battery staple"
CONNECTIONS = 64


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str) -> None:
    for _ in range(200):
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


def post(url: str, body: dict[str, object]) -> dict[str, object]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        result: dict[str, object] = json.load(response)
        return result


def wrk(url: str, seconds: int, connections: int, *options: str, script_args: tuple[str, ...] = ()) -> dict[str, float]:
    threads = min(2, connections)
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", *options, url]
    if script_args:
        command += ["--", *script_args]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    if "Non-2xx" in output or "Socket errors" in output:
        print(output, file=sys.stderr)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"\s99%\s+([\d.]+)(us|ms|s)", output)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    return {"rate": rate, "p99_ms": float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan")}


def raw_argon2_verifies(settings: Settings, seconds: float) -> float:
    """Verifies/s with the server's parameters and as many threads as it hashes with."""
    hasher = argon2.PasswordHasher(
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
    )
    stored = hasher.hash(PASSWORD)
    deadline = time.monotonic() + seconds

    def work() -> int:
        done = 0
        while time.monotonic() < deadline:
            hasher.verify(stored, PASSWORD)
            done += 1
        return done

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(settings.hash_workers) as pool:
        total = sum(pool.map(lambda _: work(), range(settings.hash_workers)))
    return total / (time.monotonic() - started)


def wheel_raw_argon2_verifies(env: dict[str, str], seconds: int) -> tuple[float, str] | None:
    """The same figure with PyPI's wheel of the same version, imported in a subprocess (None if unavailable)."""
    with tempfile.TemporaryDirectory(prefix="authgres-bench-wheel-") as tmp:
        pip = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:", "-d", tmp]
        try:
            subprocess.run([*pip, f"{DISTRIBUTION}=={build_info().version}"], check=True, capture_output=True)
            [wheel] = Path(tmp).glob("*.whl")
            shutil.unpack_archive(wheel, Path(tmp) / "wheel", "zip")
            output = subprocess.run(
                [sys.executable, __file__, "--raw-verifies-only", "--seconds", str(seconds)],
                env={**env, "PYTHONPATH": os.pathsep.join(filter(None, [f"{tmp}/wheel", env.get("PYTHONPATH")]))},
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        except (subprocess.CalledProcessError, OSError, ValueError) as error:
            print(f"(no figure for PyPI's wheel: {error})", file=sys.stderr)
            return None
    result = json.loads(output)
    return float(result["rate"]), str(result["build"])


def sessions(base: str, count: int) -> list[dict[str, object]]:
    return [
        post(f"{base}/token?grant_type=password", {"email": "bench@example.com", "password": PASSWORD})
        for _ in range(count)
    ]


def pgbench_refresh(cluster: LocalCluster, dbname: str, tokens: list[str], seconds: int, clients: int) -> float:
    with psycopg.connect(cluster.conninfo(dbname=dbname), autocommit=True) as conn:
        conn.execute("create table public.bench_tokens (id int primary key, token text not null)")
        conn.cursor().executemany("insert into public.bench_tokens values (%s, %s)", list(enumerate(tokens)))
        conn.execute("grant select on public.bench_tokens to authgres_service")
    command = [
        str(_bindir() / "pgbench"),
        "-n",
        "-M",
        "simple",
        "-T",
        str(seconds),
        "-c",
        str(clients),
        "-j",
        "2",
        "-D",
        "token=none",
        "-f",
        str(HERE / "refresh.pgbench"),
        cluster.conninfo(user="authgres_service", dbname=dbname),
    ]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return float(re.search(r"tps = ([\d.]+)", output).group(1))  # type: ignore[union-attr]


def rss_mib(pid: int) -> tuple[float, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    current = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    peak = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    return current / 1024, peak / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1, help="authgres serve --workers N")
    parser.add_argument("--pooler", action="store_true", help="the service reaches PostgreSQL through PgBouncer")
    parser.add_argument("--raw-verifies-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw_verifies_only:  # the wheel's figure, in a process that imports it
        rate = raw_argon2_verifies(Settings.from_env(dict(os.environ)), args.seconds)
        print(json.dumps({"rate": rate, "build": build_info().describe()}))
        return
    if not shutil.which("wrk"):
        sys.exit("bench needs wrk (apt-get install wrk)")

    cluster = LocalCluster(Path(tempfile.mkdtemp(prefix="authgres-bench-")), port=5432)
    cluster.start(durable=False)
    processes: list[subprocess.Popen[bytes]] = []
    stops: list[Callable[[], None]] = []
    try:
        with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
            conn.execute("create database bench")
        subprocess.run(
            ["bash", str(ROOT / "sql" / "migrate.sh"), cluster.conninfo(dbname="bench")],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        port, hello_port = free_port(), free_port()
        bouncer = None
        if args.pooler:  # transaction mode, as production poolers run
            bouncer = LocalPgBouncer(Path(tempfile.mkdtemp(prefix="authgres-bench-pgbouncer-")), cluster, free_port())
            bouncer.start()
            stops.append(bouncer.stop)
        env = {
            **os.environ,
            "DATABASE_URL": bouncer.url("authgres_service", "bench")
            if bouncer
            else cluster.url("authgres_service", "bench"),
            "AUTHGRES_JWT_SECRET": SECRET,
            "AUTHGRES_PORT": str(port),
            "AUTHGRES_MAILER_AUTOCONFIRM": "true",
            "AUTHGRES_LOG_LEVEL": "WARNING",
        }
        settings = Settings.from_env(env)
        server = subprocess.Popen([sys.executable, "-m", "authgres", "serve", "--workers", str(args.workers)], env=env)
        hello = subprocess.Popen([sys.executable, str(HERE / "hello.py"), str(hello_port)])
        processes += [server, hello]
        base = f"http://127.0.0.1:{port}"
        wait_for(f"{base}/health")
        wait_for(f"http://127.0.0.1:{hello_port}/")

        post(f"{base}/signup", {"email": "bench@example.com", "password": PASSWORD})
        access_token = sessions(base, 1)[0]["access_token"]
        seconds = args.seconds
        results: dict[str, dict[str, float]] = {}

        print(
            f"argon2id m={settings.argon2_memory_kib} KiB t={settings.argon2_time_cost} "
            f"p={settings.argon2_parallelism}, {settings.hash_workers} hashing threads, {os.cpu_count()} cores, "
            f"{seconds}s per figure; {args.workers} worker(s), " + ("through PgBouncer" if bouncer else "direct")
        )
        print(f"argon2 the service runs: {build_info().describe()}")
        wheel = wheel_raw_argon2_verifies(env, seconds) if build_info().origin == "source" else None
        # Measured before and after the logins, which are compared with the mean: this box's speed drifts
        # by 10-20% from minute to minute, and a single figure taken earlier would skew the ratio.
        raw_before = raw_argon2_verifies(settings, seconds)
        few_logins = 2 * settings.hash_workers
        login_body = json.dumps({"email": "bench@example.com", "password": PASSWORD})
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
            script.write(
                f'wrk.method = "POST"\nwrk.body = \'{login_body}\'\nwrk.headers["Content-Type"] = "application/json"\n'
            )
        login_url = f"{base}/token?grant_type=password"
        # At the concurrency of every other figure (the hashing threads always have a login queued), and
        # with two in flight per hashing thread (one hashing, one in its HTTP and database round trips).
        results["login"] = wrk(login_url, seconds, CONNECTIONS, "-s", script.name)
        results["login_few"] = wrk(login_url, seconds, few_logins, "-s", script.name)
        os.unlink(script.name)
        raw_after = raw_argon2_verifies(settings, seconds)
        raw_verifies = (raw_before + raw_after) / 2

        tokens_http = [str(s["refresh_token"]) for s in sessions(base, 2 * CONNECTIONS)]
        tokens_sql = [str(s["refresh_token"]) for s in sessions(base, CONNECTIONS)]
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as token_file:
            token_file.write("\n".join(tokens_http))
        results["refresh"] = wrk(
            f"{base}/", seconds, CONNECTIONS, "-s", str(HERE / "refresh.lua"), script_args=(token_file.name, "2")
        )
        os.unlink(token_file.name)
        sql_refreshes = pgbench_refresh(cluster, "bench", tokens_sql, seconds, CONNECTIONS)

        results["get_user"] = wrk(f"{base}/user", seconds, CONNECTIONS, "-H", f"Authorization: Bearer {access_token}")
        results["hello"] = wrk(f"http://127.0.0.1:{hello_port}/", seconds, CONNECTIONS)
        workers = sorted(int(pid) for pid in Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split())
        rss, peak = max(rss_mib(pid) for pid in (workers or [server.pid]))

        print(
            f"raw argon2id verifies/s            {raw_verifies:10.1f}   (the build the service runs; "
            f"{raw_before:.1f} before the logins, {raw_after:.1f} after)"
        )
        if wheel:
            print(
                f"raw argon2id verifies/s, PyPI wheel {wheel[0]:10.1f}   "
                f"(built here: x{raw_verifies / wheel[0]:.2f}; {wheel[1]})"
            )
        print(
            f"password logins/s over HTTP        {results['login']['rate']:10.1f}   "
            f"ratio {results['login']['rate'] / raw_verifies:.2f} (target >= 0.9)"
        )
        print(
            f"  the same, {few_logins} in flight           {results['login_few']['rate']:10.1f}   "
            f"ratio {results['login_few']['rate'] / raw_verifies:.2f}"
        )
        print(f"refresh rotations/s in SQL         {sql_refreshes:10.1f}   (pgbench, {CONNECTIONS} clients)")
        print(
            f"refreshes/s over HTTP              {results['refresh']['rate']:10.1f}   "
            f"ratio {results['refresh']['rate'] / sql_refreshes:.2f} (target >= 0.5)   "
            f"p99 {results['refresh']['p99_ms']:.1f} ms"
        )
        print(
            f"GET /user requests/s               {results['get_user']['rate']:10.1f}   "
            f"ratio {results['get_user']['rate'] / results['hello']['rate']:.2f} (target >= 0.15)   "
            f"p99 {results['get_user']['p99_ms']:.1f} ms"
        )
        print(
            f"aiohttp hello-world requests/s     {results['hello']['rate']:10.1f}   "
            f"p99 {results['hello']['p99_ms']:.1f} ms"
        )
        print(f"service memory                     {rss:10.1f} MiB (peak {peak:.1f} MiB; target < 150)")
        print(f"(all at {CONNECTIONS} connections unless said)")
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)
        for stop in stops:
            stop()
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)


if __name__ == "__main__":
    main()
