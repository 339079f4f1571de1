"""JWT verification: what is trusted, and what gets 401."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from hirestream.shared.devtoken import mint_token
from hirestream.shared.identity import Role
from hirestream.shared.web import auth
from hirestream.shared.web.auth import InvalidToken, JwtVerifier

SECRET = "Qm9sZC1yYW5kb20ta2V5LWZvci11bml0LXRlc3Rz-x7Pz"


def claims(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "sub": "u1",
        "role": "candidate",
        "exp": datetime.now(UTC) + timedelta(hours=1),
    }
    base.update(changes)
    return base


async def test_a_minted_token_verifies() -> None:
    token = mint_token(SECRET, role=Role.EMPLOYER, sub="u1", org="acme")
    principal = await JwtVerifier(SECRET).verify(token)
    assert principal.user_id == "u1"
    assert principal.role is Role.EMPLOYER
    assert principal.org == "acme"


async def test_wrong_signature() -> None:
    token = mint_token("t" * 40, role=Role.CANDIDATE, sub="u1")
    with pytest.raises(InvalidToken):
        await JwtVerifier(SECRET).verify(token)


async def test_alg_none_is_refused() -> None:
    token = jwt.encode(claims(role="admin"), key="", algorithm="none")
    with pytest.raises(InvalidToken):
        await JwtVerifier(SECRET).verify(token)


async def test_expired_beyond_leeway() -> None:
    token = mint_token(SECRET, role=Role.CANDIDATE, sub="u1", ttl=timedelta(minutes=-5))
    with pytest.raises(InvalidToken, match="expired"):
        await JwtVerifier(SECRET).verify(token)


async def test_issuer_and_audience_checked_when_configured() -> None:
    token = mint_token(SECRET, role=Role.CANDIDATE, sub="u1", issuer="other", audience="x")
    with pytest.raises(InvalidToken):
        await JwtVerifier(SECRET, issuer="hirestream-idp").verify(token)
    with pytest.raises(InvalidToken):
        await JwtVerifier(SECRET, audience="hirestream").verify(token)
    good = mint_token(SECRET, role=Role.CANDIDATE, sub="u1", issuer="idp", audience="hs")
    assert (await JwtVerifier(SECRET, issuer="idp", audience="hs").verify(good)).user_id == "u1"


async def test_employer_without_org_and_unknown_role_are_refused() -> None:
    no_org = jwt.encode(claims(role="employer"), SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken, match="org"):
        await JwtVerifier(SECRET).verify(no_org)
    root = jwt.encode(claims(role="root"), SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken, match="role"):
        await JwtVerifier(SECRET).verify(root)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def signature_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tokens whose signature the verifier checked, in order."""
    checked: list[str] = []
    decode = jwt.decode

    def counting_decode(token: str, *args: Any, **kwargs: Any) -> Any:
        checked.append(token)
        return decode(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting_decode)
    return checked


async def test_a_verified_token_is_trusted_again_until_the_cache_time(
    signature_checks: list[str],
) -> None:
    clock = Clock()
    verifier = JwtVerifier(SECRET, clock=clock)
    token = mint_token(SECRET, role=Role.CANDIDATE, sub="u1", ttl=timedelta(hours=1))

    for _ in range(3):
        assert (await verifier.verify(token)).user_id == "u1"
    assert signature_checks == [token]

    clock.now += auth.VERIFIED_TOKEN_CACHE_S + 1
    await verifier.verify(token)
    assert signature_checks == [token, token]


async def test_a_cached_token_is_checked_again_once_it_expires(
    signature_checks: list[str],
) -> None:
    clock = Clock()
    verifier = JwtVerifier(SECRET, clock=clock)
    token = mint_token(SECRET, role=Role.CANDIDATE, sub="u1", ttl=timedelta(seconds=10))
    await verifier.verify(token)

    clock.now += 11  # past its expiry, well within the cache time
    await verifier.verify(token)  # checked again (still inside the clock-skew leeway)
    assert signature_checks == [token, token]


async def test_refused_tokens_are_not_cached(signature_checks: list[str]) -> None:
    verifier = JwtVerifier(SECRET)
    forged = mint_token("t" * 40, role=Role.ADMIN, sub="u1")
    for _ in range(2):
        with pytest.raises(InvalidToken):
            await verifier.verify(forged)
    assert signature_checks == [forged, forged]


async def test_missing_exp_is_refused() -> None:
    token = jwt.encode({"sub": "u", "role": "candidate"}, SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken):
        await JwtVerifier(SECRET).verify(token)


# ----------------------------------------------------------------- RS256 / ES256 via JWKS


class KeySet:
    """A JWKS endpoint on loopback whose keys a test can rotate; counts its fetches."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.fetches = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.fetches += 1
                body = json.dumps({"keys": owner.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/.well-known/jwks.json"

    def publish(self, kid: str, public_key: Any, algorithm: str) -> None:
        to_jwk = RSAAlgorithm.to_jwk if algorithm == "RS256" else ECAlgorithm.to_jwk
        jwk = json.loads(to_jwk(public_key))
        self.keys = [{**jwk, "kid": kid, "alg": algorithm, "use": "sig"}]


@pytest.fixture
def key_set() -> Iterator[KeySet]:
    keys = KeySet()
    thread = threading.Thread(target=keys.server.serve_forever, daemon=True)
    thread.start()
    yield keys
    keys.server.shutdown()


async def test_rs256_and_es256_tokens_verify_against_the_key_set(key_set: KeySet) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_set.publish("rsa-1", rsa_key.public_key(), "RS256")
    verifier = JwtVerifier(jwks_url=key_set.url, refresh_cooldown_s=0)
    token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "rsa-1"})
    assert (await verifier.verify(token)).user_id == "u1"

    ec_key = ec.generate_private_key(ec.SECP256R1())
    key_set.publish("ec-1", ec_key.public_key(), "ES256")
    token = jwt.encode(claims(sub="u2"), ec_key, algorithm="ES256", headers={"kid": "ec-1"})
    assert (await verifier.verify(token)).user_id == "u2"  # unknown kid: one refetch


async def test_keys_are_cached_and_a_rotation_is_picked_up(key_set: KeySet) -> None:
    old = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_set.publish("2026-11", old.public_key(), "RS256")
    verifier = JwtVerifier(jwks_url=key_set.url, refresh_cooldown_s=0)
    for _ in range(5):
        token = jwt.encode(claims(), old, algorithm="RS256", headers={"kid": "2026-11"})
        await verifier.verify(token)
    assert key_set.fetches == 1  # cached

    new = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_set.publish("2026-12", new.public_key(), "RS256")
    token = jwt.encode(claims(), new, algorithm="RS256", headers={"kid": "2026-12"})
    assert (await verifier.verify(token)).user_id == "u1"
    assert key_set.fetches == 2


async def test_a_key_the_set_does_not_hold_is_refused(key_set: KeySet) -> None:
    published = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_set.publish("k1", published.public_key(), "RS256")
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(claims(role="admin"), forger, algorithm="RS256", headers={"kid": "k1"})
    with pytest.raises(InvalidToken):
        await JwtVerifier(jwks_url=key_set.url).verify(token)


async def test_the_public_key_cannot_be_used_as_an_hs256_secret(key_set: KeySet) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_set.publish("k1", key.public_key(), "RS256")
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # The classic algorithm-confusion forgery: HMAC with the public key as the secret.
    # (built by hand: PyJWT itself refuses to HMAC with a PEM key)
    forged = _hs256_with(pem, claims(role="admin"))
    with pytest.raises(InvalidToken, match="not accepted"):
        await JwtVerifier(jwks_url=key_set.url).verify(forged)


def _hs256_with(secret: bytes, payload: dict[str, Any]) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    body = b64(json.dumps({**payload, "exp": int(payload["exp"].timestamp())}).encode())
    signature = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64(signature)}"


async def test_made_up_key_ids_cannot_flood_the_identity_provider(key_set: KeySet) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_set.publish("real", key.public_key(), "RS256")
    verifier = JwtVerifier(jwks_url=key_set.url)  # the production cooldown
    for attempt in range(10):
        token = jwt.encode(claims(), key, algorithm="RS256", headers={"kid": f"fake-{attempt}"})
        with pytest.raises(InvalidToken):
            await verifier.verify(token)
    assert key_set.fetches == 1
