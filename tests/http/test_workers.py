"""Several processes and instances: `authgres serve --workers N` restarts a worker that dies and drains on
SIGTERM; two instances on two ports share what must be shared because it lives in PostgreSQL; /ready."""

import asyncio
import json
import os
import signal
import threading
import urllib.request
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

from authgres.app import create_app
from authgres.signing import generate_es256_key
from tests.conftest import CLUSTER
from tests.http.helpers import bearer, header_of, sign_up
from tests.http.mail import outbox_settled
from tests.http.processes import SERVICE_DEADLINE, answers, get, wait_for


def children_of(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(child) for child in path.read_text().split()} if path.exists() else set()


def test_a_worker_that_dies_is_started_again_and_sigterm_stops_them_all(serve):
    parent, base = serve("--workers", "2")
    workers = wait_for(lambda: len(children_of(parent.pid)) == 2 and children_of(parent.pid), "two workers")

    victim = sorted(workers)[1]
    os.kill(victim, signal.SIGKILL)
    replaced = wait_for(
        lambda: (now := children_of(parent.pid)) and len(now) == 2 and victim not in now and now, "a new worker"
    )
    assert len(replaced & workers) == 1
    assert answers(f"{base}/health")

    parent.send_signal(signal.SIGTERM)
    assert parent.wait(SERVICE_DEADLINE) == 0
    assert all(
        not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text() for pid in replaced
    )
    assert not answers(f"{base}/health")


def test_sigterm_lets_a_request_in_flight_finish(serve, admin):
    admin.execute("""
        create function public.slowly(event jsonb) returns jsonb language sql
          as $$ select pg_sleep(1); select '{}'::jsonb $$
    """)
    process, base = serve("--workers", "1", AUTHGRES_HOOK_BEFORE_USER_CREATED="public.slowly")
    outcome: dict[str, object] = {}

    def sign_up_slowly() -> None:
        request = urllib.request.Request(
            f"{base}/signup",
            json.dumps({"email": "drained@example.com", "password": "a good password"}).encode(),
            {"Content-Type": "application/json"},
        )
        outcome["status"], outcome["body"] = get(request)

    thread = threading.Thread(target=sign_up_slowly)
    thread.start()
    wait_for(
        lambda: admin.execute("select count(*) from pg_stat_activity where wait_event = 'PgSleep'").fetchone()[0],
        "the hook to be running",
    )
    process.send_signal(signal.SIGTERM)
    thread.join(SERVICE_DEADLINE)

    assert outcome["status"] == 200
    assert admin.execute("select count(*) from auth.users where email = 'drained@example.com'").fetchone()[0] == 1
    assert process.wait(SERVICE_DEADLINE) == 0
    assert not answers(f"{base}/health")


async def test_ready_reports_the_database(client, postgresql):
    response = await client.get("/ready")
    assert (response.status, await response.json()) == (200, {"ready": True, "database": True, "draining": False})
    dbname = postgresql.info.dbname
    with psycopg.connect(CLUSTER.conninfo(), autocommit=True) as elsewhere:  # not the database it closes
        elsewhere.execute(f"alter database {dbname} allow_connections false")
        elsewhere.execute("select pg_terminate_backend(pid) from pg_stat_activity where usename = 'authgres_service'")
        try:
            response = await client.get("/ready")
            assert response.status == 503
            assert (await response.json())["database"] is False
            assert (await client.get("/health")).status == 200  # liveness is not readiness
        finally:
            elsewhere.execute(f"alter database {dbname} allow_connections true")
    # Ready again once the pool (or a pooler, after its login retry delay) reconnects: within seconds.
    statuses = []
    async with asyncio.timeout(SERVICE_DEADLINE):
        while not statuses or statuses[-1] != 200:
            statuses.append((await client.get("/ready")).status)
    assert set(statuses) <= {200, 503}


async def test_two_instances_share_throttles_exactly(make_settings, aiohttp_client):
    settings = make_settings(mailer_autoconfirm=False, rate_limit_email_per_ip=4)
    first, second = [await aiohttp_client(create_app(settings)) for _ in range(2)]
    statuses = []
    for n in range(6):
        response = await (first, second)[n % 2].post("/otp", json={"email": f"shared{n}@example.com"})
        statuses.append(response.status)
    assert statuses == [200, 200, 200, 200, 429, 429]


async def test_two_instances_deliver_each_email_once(make_settings, smtp, inbox, aiohttp_client, admin):
    settings = make_settings(smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_tls="none", mailer_autoconfirm=False)
    instances = [await aiohttp_client(create_app(settings)) for _ in range(2)]
    addresses = [f"once{n}@example.com" for n in range(20)]
    await asyncio.gather(
        *(
            instances[n % 2].post("/signup", json={"email": a, "password": "a good password"})
            for n, a in enumerate(addresses)
        )
    )
    delivered = await asyncio.to_thread(inbox.wait_for, 20)
    assert sorted(message["To"] for message in delivered) == sorted(addresses)
    assert await outbox_settled(admin) == {"sent": 20}


async def test_a_key_rotation_on_one_instance_is_honoured_by_the_other_at_once(settings, aiohttp_client, dsn):
    first, second = [await aiohttp_client(create_app(settings)) for _ in range(2)]
    session = await sign_up(first, "rotated@example.com")
    with psycopg.connect(dsn("authgres_service"), autocommit=True) as conn:  # what `authgres keys` does
        private_pem, public_jwk = generate_es256_key()
        conn.execute("select auth.add_signing_key('ES256', %s, %s)", (private_pem, Jsonb(public_jwk)))
        conn.execute("select auth.rotate_signing_keys()")

    signed_in = await second.post(
        "/token?grant_type=password", json={"email": "rotated@example.com", "password": "a good password"}
    )
    fresh = await signed_in.json()
    assert header_of(fresh["access_token"])["alg"] == "ES256"
    assert header_of(fresh["access_token"])["kid"] == public_jwk["kid"]
    assert (await first.get("/user", headers=bearer(fresh))).status == 200  # verified by the other instance
    assert (await first.get("/user", headers=bearer(session))).status == 200  # the previous key still verifies
    jwks = await (await first.get("/.well-known/jwks.json")).json()
    assert public_jwk["kid"] in {key["kid"] for key in jwks["keys"]}
