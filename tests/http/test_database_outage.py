"""A database restart costs at most the in-flight requests, answered as retryable errors."""

from tests.conftest import THROUGH_POOLER
from tests.http.helpers import API_2024, bearer, sign_up


async def test_service_recovers_after_its_connections_are_killed(client, admin, settings):
    session = await sign_up(client)
    admin.execute("select pg_terminate_backend(pid) from pg_stat_activity where usename = 'authgres_service'")

    statuses = []
    for _ in range(settings.db_pool_max + 2):
        response = await client.get("/user", headers={**API_2024, **bearer(session)})
        statuses.append(response.status)
        if response.status == 200:
            break
        assert response.status == 503  # retryable for both official clients, never a 500
        assert response.headers["X-Supabase-Api-Version"] == "2024-01-01"
    if not THROUGH_POOLER:  # a pooler replaces its killed server connections before the service notices
        assert statuses[0] == 503, statuses  # the outage was real
    assert statuses[-1] == 200, statuses
