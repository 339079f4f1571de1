"""JWT verification: what is trusted, and what gets 401."""

from datetime import UTC, datetime, timedelta

import jwt
import pytest

from hirestream.shared.devtoken import mint_token
from hirestream.shared.web.auth import InvalidToken, JwtVerifier, Role

SECRET = "s" * 40


def test_a_minted_token_verifies() -> None:
    token = mint_token(SECRET, role=Role.EMPLOYER, sub="u1", org="acme")
    principal = JwtVerifier(SECRET).verify(token)
    assert principal.user_id == "u1"
    assert principal.role is Role.EMPLOYER
    assert principal.org == "acme"


def test_wrong_signature() -> None:
    token = mint_token("t" * 40, role=Role.CANDIDATE, sub="u1")
    with pytest.raises(InvalidToken):
        JwtVerifier(SECRET).verify(token)


def test_alg_none_is_refused() -> None:
    token = jwt.encode(
        {"sub": "u1", "role": "admin", "exp": datetime.now(UTC) + timedelta(hours=1)},
        key=None,
        algorithm="none",
    )
    with pytest.raises(InvalidToken):
        JwtVerifier(SECRET).verify(token)


def test_expired_beyond_leeway() -> None:
    token = mint_token(SECRET, role=Role.CANDIDATE, sub="u1", ttl=timedelta(minutes=-5))
    with pytest.raises(InvalidToken, match="expired"):
        JwtVerifier(SECRET).verify(token)


def test_issuer_and_audience_checked_when_configured() -> None:
    token = mint_token(SECRET, role=Role.CANDIDATE, sub="u1", issuer="other", audience="x")
    with pytest.raises(InvalidToken):
        JwtVerifier(SECRET, issuer="hirestream-idp").verify(token)
    with pytest.raises(InvalidToken):
        JwtVerifier(SECRET, audience="hirestream").verify(token)
    good = mint_token(SECRET, role=Role.CANDIDATE, sub="u1", issuer="idp", audience="hs")
    assert JwtVerifier(SECRET, issuer="idp", audience="hs").verify(good).user_id == "u1"


def test_employer_without_org_and_unknown_role_are_refused() -> None:
    now = datetime.now(UTC) + timedelta(hours=1)
    no_org = jwt.encode({"sub": "u", "role": "employer", "exp": now}, SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken, match="org"):
        JwtVerifier(SECRET).verify(no_org)
    root = jwt.encode({"sub": "u", "role": "root", "exp": now}, SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken, match="role"):
        JwtVerifier(SECRET).verify(root)


def test_missing_exp_is_refused() -> None:
    token = jwt.encode({"sub": "u", "role": "candidate"}, SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken):
        JwtVerifier(SECRET).verify(token)
