"""Every security event is audited exactly once per action, in the action's transaction."""

import json
import time
from collections import Counter

import pyotp

from tests.conftest import JWT_SECRET
from tests.http.helpers import bearer
from tests.http.mail import code_in

PASSWORD = "a good password"


class Audit:
    def __init__(self, admin):
        self.admin = admin
        self.seen = self.counts()

    def counts(self):
        return Counter(a for (a,) in self.admin.execute("select payload->>'action' from auth.audit_log_entries"))

    def delta(self):
        now = self.counts()
        delta, self.seen = now - self.seen, now
        return dict(delta)


async def test_each_security_event_once_per_action(make_client, mail_settings, inbox, admin, service):
    client = await make_client(**{**vars(mail_settings), "mailer_autoconfirm": True})
    audit = Audit(admin)
    service_key = service.execute(
        "select auth.sign(%s::json, %s)",
        (json.dumps({"role": "service_role", "exp": int(time.time()) + 600}), JWT_SECRET),
    ).fetchone()[0]
    as_admin = {"Authorization": f"Bearer {service_key}"}

    session = await (await client.post("/signup", json={"email": "a@example.com", "password": PASSWORD})).json()
    assert audit.delta() == {"user_signedup": 1, "user_confirmation_completed": 1, "login": 1}

    login = await (
        await client.post("/token?grant_type=password", json={"email": "a@example.com", "password": PASSWORD})
    ).json()
    assert audit.delta() == {"login": 1}
    await client.post("/token?grant_type=password", json={"email": "a@example.com", "password": "wrong"})
    assert audit.delta() == {"login_failed": 1}

    first = login["refresh_token"]
    second = await (await client.post("/token?grant_type=refresh_token", json={"refresh_token": first})).json()
    await client.post("/token?grant_type=refresh_token", json={"refresh_token": second["refresh_token"]})
    admin.execute("update auth.refresh_tokens set updated_at = now() - interval '1 minute'")
    await client.post("/token?grant_type=refresh_token", json={"refresh_token": first})
    assert audit.delta() == {"token_revoked": 1}

    await client.put("/user", json={"password": "a new password"}, headers=bearer(session))
    assert audit.delta() == {"user_updated_password": 1}

    await client.post("/recover", json={"email": "a@example.com"})
    assert audit.delta() == {"user_recovery_requested": 1}
    recovered = await (
        await client.post(
            "/verify",
            json={"type": "recovery", "email": "a@example.com", "token": code_in(await inbox.next_to("a@example.com"))},
        )
    ).json()
    assert audit.delta() == {"login": 1}

    await client.put("/user", json={"email": "b@example.com"}, headers=bearer(recovered))
    assert audit.delta() == {}
    for address, index in (("a@example.com", 1), ("b@example.com", 0)):
        await client.post(
            "/verify",
            json={"type": "email_change", "email": address, "token": code_in(await inbox.next_to(address, index))},
        )
    assert audit.delta() == {"user_modified": 1, "login": 1}

    factor = await (await client.post("/factors", json={"factor_type": "totp"}, headers=bearer(recovered))).json()
    assert audit.delta() == {"factor_enrolled": 1}
    challenge = await (await client.post(f"/factors/{factor['id']}/challenge", headers=bearer(recovered))).json()
    verified = await (
        await client.post(
            f"/factors/{factor['id']}/verify",
            headers=bearer(recovered),
            json={"challenge_id": challenge["id"], "code": pyotp.TOTP(factor["totp"]["secret"]).now()},
        )
    ).json()
    assert audit.delta() == {"factor_verified": 1, "recovery_codes_generated": 1}
    device = await (
        await client.post("/token?grant_type=password", json={"email": "b@example.com", "password": "a new password"})
    ).json()
    audit.delta()
    challenge = await (await client.post(f"/factors/{factor['id']}/challenge", headers=bearer(device))).json()
    await client.post(
        f"/factors/{factor['id']}/verify",
        headers=bearer(device),
        json={"challenge_id": challenge["id"], "code": verified["recovery_codes"][0]},
    )
    assert audit.delta() == {"recovery_code_used": 1}
    await client.delete(f"/factors/{factor['id']}", headers=bearer(verified))
    assert audit.delta() == {"factor_unenrolled": 1}

    key = await (await client.post("/api_keys", json={"name": "k"}, headers=bearer(verified))).json()
    assert audit.delta() == {"api_key_created": 1}
    await client.delete(f"/api_keys/{key['id']}", headers=bearer(verified))
    assert audit.delta() == {"api_key_revoked": 1}

    await client.post("/logout?scope=local", headers=bearer(verified))
    assert audit.delta() == {"logout": 1}

    created = await (await client.post("/admin/users", headers=as_admin, json={"email": "c@example.com"})).json()
    assert audit.delta() == {"user_signedup": 1}
    await client.put(f"/admin/users/{created['id']}", headers=as_admin, json={"ban_duration": "1h"})
    assert audit.delta() == {"user_banned": 1}
    await client.delete(f"/admin/users/{created['id']}", headers=as_admin)
    assert audit.delta() == {"user_deleted": 1}


async def test_pruning_removes_only_what_has_outlived_its_use(service, admin):
    admin.execute("""
        insert into auth.audit_log_entries (payload, created_at) values
          ('{"action": "old"}', now() - interval '100 days'), ('{"action": "recent"}', now() - interval '1 day');
        insert into auth.rate_limits values ('old', now() - interval '2 days', 1), ('fresh', now(), 1);
    """)
    while service.execute("select auth.prune(p_batch => 1)").fetchone()[0]:
        pass
    assert [a for (a,) in admin.execute("select payload->>'action' from auth.audit_log_entries")] == ["recent"]
    assert [k for (k,) in admin.execute("select key from auth.rate_limits")] == ["fresh"]
