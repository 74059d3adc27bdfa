"""auth.sign / auth.verify, pgjwt's interface with its flaws fixed."""

import base64
import hashlib
import hmac
import json
import time

import pytest

SECRET = "a-secret-of-some-length"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def handmade(header: dict, payload: dict, secret: str = SECRET, digest=hashlib.sha256) -> str:
    signables = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(payload).encode())
    signature = hmac.new(secret.encode(), signables.encode(), digest).digest()
    return signables + "." + b64url(signature)


def verify(service, token: str, secret: str = SECRET, algorithm: str = "HS256"):
    return service.execute(
        "select header, payload, valid from auth.verify(%s, %s, %s)", (token, secret, algorithm)
    ).fetchone()


def sign(service, payload: dict, secret: str = SECRET, algorithm: str = "HS256") -> str:
    return service.execute("select auth.sign(%s::json, %s, %s)", (json.dumps(payload), secret, algorithm)).fetchone()[0]


def future() -> int:
    return int(time.time()) + 600


@pytest.mark.parametrize(
    ("algorithm", "digest"), [("HS256", hashlib.sha256), ("HS384", hashlib.sha384), ("HS512", hashlib.sha512)]
)
def test_sign_matches_an_independent_hmac_and_verifies(service, algorithm, digest):
    payload = {"sub": "u1", "exp": future()}
    token = sign(service, payload, algorithm=algorithm)
    header_segment, payload_segment, signature = token.split(".")
    expected = hmac.new(SECRET.encode(), f"{header_segment}.{payload_segment}".encode(), digest).digest()
    assert signature == b64url(expected)
    header, claims, valid = verify(service, token, algorithm=algorithm)
    assert valid is True
    assert header == {"alg": algorithm, "typ": "JWT"}
    assert claims == payload


def test_a_token_signed_elsewhere_verifies(service):
    token = handmade({"alg": "HS256", "typ": "JWT"}, {"sub": "x", "exp": future()})
    assert verify(service, token)[2] is True


def test_tampered_payload_fails(service):
    token = sign(service, {"sub": "alice", "exp": future()})
    header, _, signature = token.split(".")
    forged = header + "." + b64url(json.dumps({"sub": "mallory", "exp": future()}).encode()) + "." + signature
    assert verify(service, forged)[2] is False


def test_tampered_signature_fails(service):
    token = sign(service, {"sub": "alice", "exp": future()})
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    assert verify(service, flipped)[2] is False


def test_wrong_secret_fails(service):
    assert verify(service, sign(service, {"exp": future()}), secret="another-secret")[2] is False


def test_the_callers_algorithm_wins_over_the_header(service):
    # Signed with HS512 and saying so; a caller expecting HS256 must not accept it.
    token = handmade({"alg": "HS512", "typ": "JWT"}, {"exp": future()}, digest=hashlib.sha512)
    assert verify(service, token, algorithm="HS512")[2] is True
    assert verify(service, token, algorithm="HS256")[2] is False
    # A header that lies about its algorithm fails even when the signature matches the caller's.
    liar = handmade({"alg": "HS512", "typ": "JWT"}, {"exp": future()}, digest=hashlib.sha256)
    assert verify(service, liar, algorithm="HS256")[2] is False


def test_alg_none_never_verifies(service):
    unsigned = b64url(b'{"alg":"none","typ":"JWT"}') + "." + b64url(json.dumps({"exp": future()}).encode()) + "."
    assert verify(service, unsigned)[2] is False
    assert verify(service, unsigned, algorithm="none")[2] is False


def test_missing_or_malformed_exp_is_invalid(service):
    assert verify(service, sign(service, {"sub": "x"}))[2] is False
    assert verify(service, sign(service, {"sub": "x", "exp": str(future())}))[2] is False


def test_expired_token_is_invalid_but_still_decoded(service):
    _, payload, valid = verify(service, sign(service, {"sub": "x", "exp": int(time.time()) - 1}))
    assert valid is False
    assert payload["sub"] == "x"


def test_not_before_in_the_future_is_invalid(service):
    assert verify(service, sign(service, {"exp": future(), "nbf": future()}))[2] is False
    assert verify(service, sign(service, {"exp": future(), "nbf": int(time.time()) - 5}))[2] is True


@pytest.mark.parametrize("garbage", ["", "a.b", "a.b.c", "...", "x.y.z.w", "!!.@@.##"])
def test_garbage_is_invalid_not_an_error(service, garbage):
    assert verify(service, garbage)[2] is False


def test_unsupported_algorithm_cannot_sign(service):
    import psycopg

    with pytest.raises(psycopg.Error) as raised:
        sign(service, {"exp": future()}, algorithm="none")
    assert raised.value.sqlstate == "AUV01"


def test_url_encode_and_decode_round_trip(service):
    for data in [b"", b"f", b"fo", b"foo", bytes(range(256))]:
        encoded = service.execute("select auth.url_encode(%s)", (data,)).fetchone()[0]
        assert encoded == b64url(data)
        assert service.execute("select auth.url_decode(%s)", (encoded,)).fetchone()[0] == data


def test_verify_is_not_immutable(service):
    # It reads the clock: an IMMUTABLE verify could be folded into a cached plan and outlive exp.
    volatility = service.execute(
        "select provolatile from pg_proc where oid = 'auth.verify(text, text, text)'::regprocedure"
    ).fetchone()[0]
    assert volatility in ("s", "v")
