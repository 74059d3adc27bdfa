"""GET /metrics: what real requests leave in it, who may read it, and where it is served."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from authgres.state import DB, METRICS
from tests.conftest import JWT_SECRET, ROOT, free_port
from tests.http.helpers import API_2024, bearer, sign_up

TOKEN = "metrics-token-0123456789"
# The outboxes sweep every 0.05 s in tests; a sweep taking or awaiting a connection would show in the levels
# these tests read, so they sweep only at start (nothing here sends a message).
QUIET_OUTBOXES = 3600.0
SCRAPE = {"Authorization": f"Bearer {TOKEN}"}


def samples(text):
    """{(sample name, frozenset of label pairs): value} of a Prometheus text exposition."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scraped, name, **labels):
    return scraped.get((name, frozenset(labels.items())), 0.0)


async def scrape(client):
    response = await client.get("/metrics", headers=SCRAPE)
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return samples(await response.text())


async def test_no_token_and_no_port_means_no_metrics(client):
    response = await client.get("/metrics", headers={**API_2024, **SCRAPE})
    assert (response.status, (await response.json())["code"]) == (404, "not_found")


async def test_the_token_guards_metrics(make_client):
    client = await make_client(metrics_token=TOKEN)
    for headers, status, code in [
        ({}, 401, "no_authorization"),
        ({"Authorization": f"Basic {TOKEN}"}, 401, "no_authorization"),
        ({"Authorization": "Bearer "}, 401, "no_authorization"),
        ({"Authorization": "Bearer not-the-metrics-token"}, 403, "not_admin"),
        ({"Authorization": f"Bearer {TOKEN}x"}, 403, "not_admin"),
        ({"Authorization": "Bearer métrique"}, 403, "not_admin"),
    ]:
        response = await client.get("/metrics", headers={**API_2024, **headers})
        assert response.status == status, headers
        assert (await response.json())["code"] == code
    legacy = await (await client.get("/metrics")).json()  # GoTrue's older envelope
    assert (legacy["code"], legacy["error_code"]) == (401, "no_authorization")
    assert (await client.get("/metrics", headers={"Authorization": f"bearer {TOKEN}"})).status == 200
    # Served at the root only: /auth/v1 is the Auth API.
    assert (await client.get("/auth/v1/metrics", headers=SCRAPE)).status == 404


async def test_requests_are_counted_by_route_template_and_status(make_client):
    client = await make_client(metrics_token=TOKEN)
    session = await sign_up(client, "counted@example.com")
    for _ in range(3):
        assert (await client.get("/user", headers=bearer(session))).status == 200
    assert (await client.get("/auth/v1/user", headers=bearer(session))).status == 200
    assert (await client.get("/user")).status == 401
    factor = uuid.uuid4()
    assert (await client.post(f"/factors/{factor}/verify", headers=bearer(session), json={})).status in (400, 404)
    assert (await client.get(f"/no/such/path/{factor}")).status == 404
    assert (await client.request("TRACE", "/user")).status == 405

    text = await (await client.get("/metrics", headers=SCRAPE)).text()
    scraped = samples(text)
    count = "authgres_http_request_duration_seconds_count"
    assert value(scraped, count, route="/user", method="GET", status="200") == 4  # /auth/v1 counts as /user
    assert value(scraped, count, route="/user", method="GET", status="401") == 1
    assert value(scraped, count, route="/signup", method="POST", status="200") == 1
    route = ("route", "/factors/{factor_id}/verify")
    assert len([labels for name, labels in scraped if name == count and route in labels]) == 1
    assert value(scraped, count, route="unmatched", method="GET", status="404") == 1
    assert value(scraped, count, route="unmatched", method="other", status="405") == 1
    # The histogram: buckets from a millisecond up, the sum of the durations.
    bucket = "authgres_http_request_duration_seconds_bucket"
    assert value(scraped, bucket, route="/user", method="GET", status="200", le="+Inf") == 4
    assert (bucket, frozenset({"route": "/user", "method": "GET", "status": "200", "le": "0.001"}.items())) in scraped
    assert value(scraped, "authgres_http_request_duration_seconds_sum", route="/user", method="GET", status="200") > 0
    # Bounded: no path's own value becomes a label.
    assert str(factor) not in text and "/no/such" not in text
    # This scrape is counted by the next one.
    assert value(await scrape(client), count, route="/metrics", method="GET", status="200") == 1


async def test_batches_hashing_and_the_pool(make_client):
    client = await make_client(metrics_token=TOKEN, mailer_sweep_seconds=QUIET_OUTBOXES)
    session = await sign_up(client, "levels@example.com")
    response = await client.post(
        "/token?grant_type=password", json={"email": "levels@example.com", "password": "a good password"}
    )
    assert response.status == 200
    assert (await client.get("/user", headers=bearer(session))).status == 200
    scraped = await scrape(client)
    assert value(scraped, "authgres_password_hash_seconds_count", operation="hash") == 1
    assert value(scraped, "authgres_password_hash_seconds_count", operation="verify") == 1
    assert value(scraped, "authgres_db_batch_size_count", function="get_users") == 1
    assert value(scraped, "authgres_db_batch_size_bucket", function="get_users", le="1.0") == 1
    # A scrape reads the outbox first, then the levels: its own query is over by then.
    assert value(scraped, "authgres_db_pool_connections", state="in_use") == 0
    assert value(scraped, "authgres_db_pool_connections", state="idle") >= 1
    for level in ("authgres_db_waiting", "authgres_db_batch_queued", "authgres_password_hash_queue"):
        assert (level, frozenset()) in scraped
        assert value(scraped, level) == 0
    assert value(scraped, "process_resident_memory_bytes") > 0


async def test_levels_while_every_connection_is_busy(make_client):
    client = await make_client(metrics_token=TOKEN, db_pool_min=1, db_pool_max=1, mailer_sweep_seconds=QUIET_OUTBOXES)
    sessions = [await sign_up(client, f"busy{i}@example.com") for i in range(3)]
    database, metrics = client.server.app[DB], client.server.app[METRICS]
    async with database._slots, database.pool.connection():
        requests = [asyncio.ensure_future(client.get("/user", headers=bearer(s))) for s in sessions]
        for _ in range(200):
            if database.load()[3] == 3:
                break
            await asyncio.sleep(0.01)
        metrics.read_levels()
        level = metrics.registry.get_sample_value
        assert level("authgres_db_pool_connections", {"state": "in_use"}) == 1
        assert level("authgres_db_waiting") == 1  # the one batch that will take the three
        assert level("authgres_db_batch_queued") == 3
    assert [response.status for response in await asyncio.gather(*requests)] == [200, 200, 200]
    scraped = await scrape(client)
    assert value(scraped, "authgres_db_batch_size_bucket", function="get_users", le="2.0") == 0
    assert value(scraped, "authgres_db_batch_size_bucket", function="get_users", le="4.0") == 1
    assert value(scraped, "authgres_db_waiting") == value(scraped, "authgres_db_batch_queued") == 0


async def test_a_replayed_refresh_token_and_failed_logins_are_counted(make_client):
    client = await make_client(metrics_token=TOKEN, refresh_token_reuse_interval=0)
    session = await sign_up(client, "replay@example.com")
    spent = session["refresh_token"]
    refresh = "/token?grant_type=refresh_token"
    # The live token's parent still answers (a lost response): the grandparent is a replay.
    response = await client.post(refresh, json={"refresh_token": spent})
    parent = (await response.json())["refresh_token"]
    assert (await client.post(refresh, json={"refresh_token": parent})).status == 200
    replay = await client.post(refresh, headers=API_2024, json={"refresh_token": spent})
    assert (replay.status, (await replay.json())["code"]) == (400, "refresh_token_already_used")
    unknown = await client.post(refresh, json={"refresh_token": "never-issued-refresh-token"})
    assert unknown.status == 400  # not a replay

    login = "/token?grant_type=password"
    for email, password in [("replay@example.com", "the wrong password"), ("nobody@example.com", "whatever it is")]:
        response = await client.post(login, headers=API_2024, json={"email": email, "password": password})
        assert (response.status, (await response.json())["code"]) == (400, "invalid_credentials")
    assert (await client.post(login, json={"email": "replay@example.com", "password": "a good password"})).status == 200

    scraped = await scrape(client)
    assert value(scraped, "authgres_refresh_token_replays_total") == 1
    assert value(scraped, "authgres_login_failures_total") == 2


async def wait_for_outbox(admin, status, attempts=1):
    for _ in range(500):
        query = "select 1 from auth.email_outbox where status = %s and attempts >= %s"
        if admin.execute(query, (status, attempts)).fetchone():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {status} email in the outbox")


async def test_outbox_levels_after_a_sign_up_that_queues_an_email(make_client, admin):
    # Nothing listens on the SMTP port: the confirmation email fails and waits a minute for its retry.
    client = await make_client(
        metrics_token=TOKEN,
        mailer_autoconfirm=False,
        smtp_host="127.0.0.1",
        smtp_port=free_port(),
        smtp_tls="none",
        mailer_retry_base_seconds=60,
    )
    scraped = await scrape(client)
    assert [value(scraped, "authgres_outbox_emails", status=s) for s in ("pending", "sending", "dead")] == [0, 0, 0]
    assert value(scraped, "authgres_outbox_oldest_seconds") == 0
    response = await client.post("/signup", json={"email": "queued@example.com", "password": "a good password"})
    assert response.status == 200
    await wait_for_outbox(admin, "pending")
    admin.execute("update auth.email_outbox set created_at = now() - interval '90 seconds'")
    scraped = await scrape(client)
    assert value(scraped, "authgres_outbox_emails", status="pending") == 1
    assert value(scraped, "authgres_outbox_emails", status="dead") == 0
    assert 90 <= value(scraped, "authgres_outbox_oldest_seconds") < 120


async def test_dead_letters(make_client, admin):
    client = await make_client(
        metrics_token=TOKEN,
        mailer_autoconfirm=False,
        smtp_host="127.0.0.1",
        smtp_port=free_port(),
        smtp_tls="none",
        mailer_max_attempts=1,
    )
    for address in ("dead1@example.com", "dead2@example.com"):
        response = await client.post("/signup", json={"email": address, "password": "a good password"})
        assert response.status == 200
    for _ in range(500):
        if admin.execute("select count(*) from auth.email_outbox where status = 'dead'").fetchone()[0] == 2:
            break
        await asyncio.sleep(0.02)
    scraped = await scrape(client)
    assert value(scraped, "authgres_outbox_emails", status="dead") == 2
    assert value(scraped, "authgres_outbox_emails", status="pending") == 0
    assert value(scraped, "authgres_outbox_oldest_seconds") == 0


async def test_a_separate_port_serves_metrics_without_a_token(make_client):
    port = free_port()
    client = await make_client(metrics_port=port)
    assert (await client.get("/health")).status == 200
    async with aiohttp.ClientSession() as session:
        response = await session.get(f"http://127.0.0.1:{port}/metrics")
        assert response.status == 200
        scraped = samples(await response.text())
        assert (await session.get(f"http://127.0.0.1:{port}/user")).status == 404
    assert value(scraped, "authgres_http_request_duration_seconds_count", route="/health", method="GET", status="200")
    assert ("authgres_outbox_emails", frozenset({("status", "dead")})) in scraped
    # Its requests are not counted among the API's, and the API's port has no /metrics without a token.
    assert not [name for name, labels in scraped if ("route", "/metrics") in labels]
    assert (await client.get("/metrics")).status == 404


async def test_both_the_port_and_the_token(make_client):
    port = free_port()
    client = await make_client(metrics_port=port, metrics_token=TOKEN)
    assert (await client.get("/metrics")).status == 401
    await scrape(client)
    async with aiohttp.ClientSession() as session:
        assert (await session.get(f"http://127.0.0.1:{port}/metrics")).status == 200


async def test_a_scrape_without_the_database_still_answers(make_client):
    client = await make_client(metrics_token=TOKEN, db_pool_min=1, db_pool_max=1, mailer_sweep_seconds=QUIET_OUTBOXES)
    async with client.server.app[DB]._slots:  # every connection busy for longer than a scrape waits
        started = time.monotonic()
        scraped = await scrape(client)
        assert time.monotonic() - started < 5
    assert ("authgres_outbox_emails", frozenset({("status", "dead")})) not in scraped
    assert ("authgres_db_pool_connections", frozenset({("state", "idle")})) in scraped
    assert (await client.get("/health")).status == 200  # and the service goes on
    assert ("authgres_outbox_emails", frozenset({("status", "dead")})) in await scrape(client)


# Several processes: prometheus-client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR).


def serve_process(service_url, port, metrics_port, folder):
    env = {
        **os.environ,
        "DATABASE_URL": service_url,
        "AUTHGRES_JWT_SECRET": JWT_SECRET,
        "AUTHGRES_PORT": str(port),
        "AUTHGRES_METRICS_TOKEN": TOKEN,
        "AUTHGRES_METRICS_PORT": str(metrics_port),
        "AUTHGRES_ARGON2_MEMORY_KIB": "1024",
        "AUTHGRES_ARGON2_TIME_COST": "1",
        "AUTHGRES_DB_POOL_MIN": "1",
        "AUTHGRES_DB_POOL_MAX": "2",
        "AUTHGRES_WORKERS": "1",
        "PROMETHEUS_MULTIPROC_DIR": str(folder),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "authgres", "serve"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


async def wait_until_up(session, url, process):
    for _ in range(300):
        assert process.poll() is None, process.stderr.read()
        try:
            if (await session.get(url)).status == 200:
                return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"{url} did not come up")


async def scraped_when(session, url, ready):
    """The text of the first scrape of url whose samples are ready() (within 10 s)."""
    async with asyncio.timeout(10):
        while True:
            response = await session.get(url, headers=SCRAPE)
            assert response.status == 200
            text = await response.text()
            if ready(samples(text)):
                return text
            await asyncio.sleep(0.05)


async def test_workers_share_their_metrics(service_url, tmp_path):
    ports = [free_port(), free_port()]
    metrics_port = free_port()
    processes = []
    try:
        async with aiohttp.ClientSession() as session:
            # One after the other: two first starts at once race to set the login role's defaults.
            for port in ports:
                processes.append(serve_process(service_url, port, metrics_port, tmp_path))
                await wait_until_up(session, f"http://127.0.0.1:{port}/health", processes[-1])
            for port, times in zip(ports, (3, 2), strict=True):
                for _ in range(times):
                    assert (await session.get(f"http://127.0.0.1:{port}/settings")).status == 200
            login = {"email": "nobody@example.com", "password": "not the password"}
            response = await session.post(f"http://127.0.0.1:{ports[1]}/token?grant_type=password", json=login)
            assert response.status == 400

            def summed(text):
                scraped = samples(text)
                settings = value(
                    scraped,
                    "authgres_http_request_duration_seconds_count",
                    route="/settings",
                    method="GET",
                    status="200",
                )
                return settings, value(scraped, "authgres_login_failures_total"), scraped

            def both_levels_written(scraped):  # each worker writes its levels once a second
                pending = ("authgres_outbox_emails", frozenset({("status", "pending")}))
                return value(scraped, "authgres_db_pool_connections", state="idle") >= 2 and pending in scraped

            # Whichever worker answers, on the API's port or on the shared metrics port, answers for both.
            for url in [f"http://127.0.0.1:{port}/metrics" for port in ports] + [
                f"http://127.0.0.1:{metrics_port}/metrics"
            ]:
                settings, failures, scraped = summed(await scraped_when(session, url, both_levels_written))
                assert (settings, failures) == (5, 1), url

            # A worker that stops takes its levels out of the sums; its counts stay.
            processes[1].send_signal(signal.SIGTERM)
            assert processes[1].wait(timeout=30) == 0
            response = await session.get(f"http://127.0.0.1:{ports[0]}/metrics", headers=SCRAPE)
            settings, failures, scraped = summed(await response.text())
            assert (settings, failures) == (5, 1)
            idle = value(scraped, "authgres_db_pool_connections", state="idle")
            assert 1 <= idle <= 2

        # serve logs JSON lines: one per request, the metrics token in none.
        log = processes[1].stderr.read()
        assert TOKEN not in log
        lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
        requests = [line for line in lines if line["logger"] == "authgres.access"]
        assert [(r["method"], r["route"], r["status"]) for r in requests if r["route"] != "/health"][:3] == [
            ("GET", "/settings", 200),
            ("GET", "/settings", 200),
            ("POST", "/token", 400),
        ]
        assert all(len(r["request_id"]) == 32 and r["duration_ms"] >= 0 for r in requests)
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)
        for process in processes:
            process.stderr.close()
