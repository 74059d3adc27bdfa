"""Wallet sign-in in SQL (auth.sign_in_with_identity with p_method web3), called as the service role: a
message's digest signs in once, also when several connections present it at once; a refused or rolled
back sign-in leaves it unused; the per-IP limit; the prune keeps a digest until an hour past its
validity."""

import hashlib
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import psycopg
from psycopg.types.json import Jsonb

from tests.sql.helpers import call

SUBJECT = "web3:solana:8vZ1rVxyYvAj3tLo5pD4X2uCq8kCwZ9Uu6Nn5pQ3sRmE"
CLAIMS = {"address": SUBJECT.split(":")[2], "chain": "solana", "network": "solana:mainnet", "domain": "a.example"}


def digest(text="a signed message"):
    return hashlib.sha256(text.encode()).digest()


def sign_in(conn, message_digest=None, ip="192.0.2.1", **changes):
    params = {
        "provider": "web3",
        "subject": SUBJECT,
        "claims": Jsonb(CLAIMS),
        "method": "web3",
        "ip": ip,
        "message_digest": message_digest or digest(),
        "valid_until": conn.execute("select now() + interval '10 minutes'").fetchone()[0],
        "audit": Jsonb({"chain": "solana", "address": CLAIMS["address"]}),
        **changes,
    }
    try:
        return call(conn, "sign_in_with_identity", **params)
    except psycopg.Error as error:
        return error.sqlstate


def test_a_message_signs_in_once(service, admin):
    first = sign_in(service)
    assert isinstance(first, dict) and first["user"]["app_metadata"]["provider"] == "web3"
    assert sign_in(service) == "AUI07"
    assert isinstance(sign_in(service, digest("another message")), dict)
    assert admin.execute("select count(*) from auth.sessions").fetchone()[0] == 2
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 1
    amr = admin.execute("select distinct authentication_method from auth.mfa_amr_claims").fetchall()
    assert amr == [("web3",)]
    traits = admin.execute(
        "select payload -> 'traits' from auth.audit_log_entries where payload ->> 'action' = 'login' limit 1"
    ).fetchone()[0]
    assert traits == {"provider": "web3", "via": "web3", "chain": "solana", "address": CLAIMS["address"]}


def test_simultaneous_uses_of_one_message_give_one_session(service, admin, dsn):
    count = 6
    barrier = Barrier(count)

    def attempt(_):
        with psycopg.connect(dsn("authgres_service"), autocommit=True) as conn:
            barrier.wait()
            return sign_in(conn)

    with ThreadPoolExecutor(count) as pool:
        results = list(pool.map(attempt, range(count)))
    assert sorted(isinstance(result, dict) for result in results) == [False] * (count - 1) + [True]
    assert [result for result in results if not isinstance(result, dict)] == ["AUI07"] * (count - 1)
    assert admin.execute("select count(*) from auth.sessions").fetchone()[0] == 1
    assert admin.execute("select count(*) from auth.web3_used_messages").fetchone()[0] == 1


def test_a_sign_in_rolled_back_leaves_the_message_unused(dsn, service, admin):
    with psycopg.connect(dsn("authgres_service")) as conn:  # a transaction, as the service's
        assert isinstance(sign_in(conn), dict)
        conn.rollback()
    assert admin.execute("select count(*) from auth.web3_used_messages").fetchone()[0] == 0
    assert isinstance(sign_in(service), dict)


def test_a_wallet_sign_in_needs_its_digest_and_validity(service, admin):
    assert sign_in(service, message_digest=None, valid_until=None) == "AUV01"
    assert sign_in(service, state="some-state") == "AUV01"
    assert admin.execute("select count(*) from auth.users").fetchone()[0] == 0


def test_sign_ins_from_one_ip_are_limited(service, admin):
    admin.execute("update auth.settings set rate_limit_web3 = 2")
    assert isinstance(sign_in(service, digest("1")), dict)
    assert isinstance(sign_in(service, digest("2")), dict)
    assert sign_in(service, digest("3")) == "AUL02"
    assert isinstance(sign_in(service, digest("3"), ip="192.0.2.2"), dict)  # another client
    assert admin.execute("select count(*) from auth.web3_used_messages").fetchone()[0] == 3


def test_prune_keeps_a_digest_an_hour_past_its_validity(service, admin):
    assert isinstance(sign_in(service), dict)
    admin.execute("update auth.web3_used_messages set valid_until = now() - interval '59 minutes'")
    call(service, "prune")
    assert admin.execute("select count(*) from auth.web3_used_messages").fetchone()[0] == 1
    admin.execute("update auth.web3_used_messages set valid_until = now() - interval '61 minutes'")
    call(service, "prune")
    assert admin.execute("select count(*) from auth.web3_used_messages").fetchone()[0] == 0
