"""X-Forwarded-For counts only when the peer is a trusted proxy (AUTHGRES_TRUSTED_PROXIES): otherwise a
client could pick the address that per-IP throttles and the audit log see."""

import ipaddress

from tests.http.helpers import API_2024

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


async def recorded_ip(client, admin, email, forwarded):
    response = await client.post(
        "/signup", json={"email": email, "password": "a good password"}, headers={"X-Forwarded-For": forwarded}
    )
    assert response.status == 200
    return admin.execute(
        "select host(s.ip) from auth.sessions s join auth.users u on u.id = s.user_id where u.email = %s", (email,)
    ).fetchone()[0]


async def test_a_direct_client_cannot_choose_its_address(client, admin):
    assert await recorded_ip(client, admin, "direct@example.com", "203.0.113.7") == "127.0.0.1"


async def test_behind_a_trusted_proxy_the_address_it_saw_counts(make_client, admin):
    client = await make_client(trusted_proxies=LOOPBACK)
    assert await recorded_ip(client, admin, "proxied@example.com", "203.0.113.7") == "203.0.113.7"
    # Entries the client wrote before its request reached the proxy are not believed: the proxy
    # appends the address it saw, so the rightmost untrusted entry is the client.
    assert await recorded_ip(client, admin, "spoofed@example.com", "198.51.100.1, 203.0.113.8") == "203.0.113.8"
    # A chain of trusted proxies is walked past.
    assert await recorded_ip(client, admin, "chain@example.com", "203.0.113.9, 127.0.0.5") == "203.0.113.9"
    # A malformed entry stops the walk at the last trustworthy hop.
    assert await recorded_ip(client, admin, "garbled@example.com", "203.0.113.10, not-an-ip") == "127.0.0.1"


async def test_rotating_the_header_does_not_escape_the_per_ip_budget(make_client):
    client = await make_client(mailer_autoconfirm=False, rate_limit_email_per_ip=2)
    statuses = []
    for n in range(4):
        response = await client.post(
            "/otp", json={"email": f"rotate{n}@example.com"}, headers={**API_2024, "X-Forwarded-For": f"198.51.100.{n}"}
        )
        statuses.append(response.status)
    assert statuses == [200, 200, 429, 429]


def test_trusted_proxies_are_read_as_networks():
    from authgres.settings import ConfigError, Settings

    base = {"DATABASE_URL": "postgresql:///x", "AUTHGRES_JWT_SECRET": "s" * 32}
    settings = Settings.from_env({**base, "AUTHGRES_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1, ::1"})
    assert [str(n) for n in settings.trusted_proxies] == ["10.0.0.0/8", "192.0.2.1/32", "::1/128"]
    try:
        Settings.from_env({**base, "AUTHGRES_TRUSTED_PROXIES": "10.0.0.0/33"})
    except ConfigError as error:
        assert "AUTHGRES_TRUSTED_PROXIES" in str(error)
    else:
        raise AssertionError("a malformed network was accepted")
