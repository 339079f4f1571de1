"""Bearer-JWT authentication and role checks (docs/api.md, "Authentication").

Production verifies RS256/ES256 tokens against the identity provider's key set
(`JWT_JWKS_URL`): keys are cached, and a token signed with a key id the cache does not know
makes one refetch, which is how a key rotation is picked up. Local runs and tests sign with
HS256 and `JWT_SECRET`. The algorithm in a token's header only selects between the configured
verifiers, each of which accepts its own algorithms only, so an RS256 public key can never be
used as an HS256 secret. `alg: none`, a wrong signature, issuer or audience (when configured)
and an expired token all give 401; a valid token without the role a route needs gives 403.
Ownership (the `org` claim, the `sub`) is checked by each route against what it touches.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Annotated, Any

import jwt
from cachetools import TLRUCache
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from hirestream.shared.identity import Principal, Role
from hirestream.shared.web.problems import Problem

CLOCK_SKEW_LEEWAY_S = 30


class InvalidToken(Exception):
    """The token cannot be trusted; the message says why (never the token itself)."""


SHARED_SECRET_ALGORITHMS: tuple[str, ...] = ("HS256",)
KEY_SET_ALGORITHMS: tuple[str, ...] = ("RS256", "ES256")
# How long fetched signing keys are trusted before the key set is fetched again.
KEY_SET_CACHE_S = 300
# After a fetch, an unknown key id waits this long before it may force another one: tokens
# with made-up key ids must not turn us into a flood against the identity provider.
KEY_SET_REFRESH_COOLDOWN_S = 30.0
# A token that verified is trusted again without checking its signature for this long at most,
# and never past its expiry: clients send one token with many requests, and the signature check
# was the largest single cost of a request we could drop. The price:
# a signing key withdrawn from the key set still admits the tokens it signed for this long.
VERIFIED_TOKEN_CACHE_S = 60.0
VERIFIED_TOKEN_CACHE_SIZE = 10_000
# A stolen token is good until it expires: tokens meant to live longer than this are refused.
DEFAULT_MAX_LIFETIME_S = 24 * 3600.0


class JwtVerifier:
    """Verifies tokens: HS256 with the shared secret, RS256/ES256 against the key set."""

    def __init__(
        self,
        secret: str | None = None,
        *,
        jwks_url: str | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        refresh_cooldown_s: float = KEY_SET_REFRESH_COOLDOWN_S,
        max_lifetime_s: float = DEFAULT_MAX_LIFETIME_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret
        self._max_lifetime_s = max_lifetime_s
        self._clock = clock
        # PyJWKClient caches the key set and refetches once for an unknown key id.
        self._key_set = (
            jwt.PyJWKClient(
                jwks_url,
                cache_keys=True,
                lifespan=KEY_SET_CACHE_S,
                timeout=5,
                cooldown_duration=refresh_cooldown_s,
            )
            if jwks_url
            else None
        )
        self._issuer = issuer
        self._audience = audience
        # Only tokens that verified are kept, so made-up tokens cannot fill it. Each entry
        # holds the principal and the token's expiry; it lives until the earlier of that
        # expiry and VERIFIED_TOKEN_CACHE_S from now.
        self._verified: TLRUCache[str, tuple[Principal, float]] = TLRUCache(
            maxsize=VERIFIED_TOKEN_CACHE_SIZE,
            ttu=lambda _token, entry, now: min(entry[1], now + VERIFIED_TOKEN_CACHE_S),
            timer=clock,
        )

    async def verify(self, token: str) -> Principal:
        if (known := self._verified.get(token)) is not None:
            return known[0]
        principal, expires_at = await self._verify_signed(token)
        self._verified[token] = (principal, expires_at)
        return principal

    async def _verify_signed(self, token: str) -> tuple[Principal, float]:
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
            if algorithm in SHARED_SECRET_ALGORITHMS and self._secret:
                key: Any = self._secret
                allowed = SHARED_SECRET_ALGORITHMS
            elif algorithm in KEY_SET_ALGORITHMS and self._key_set is not None:
                # PyJWKClient fetches with blocking urllib: keep it off the event loop.
                signing_key = await asyncio.to_thread(self._key_set.get_signing_key_from_jwt, token)
                key, allowed = signing_key.key, KEY_SET_ALGORITHMS
            else:
                raise InvalidToken(f"algorithm {algorithm!r} is not accepted")
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=list(allowed),
                issuer=self._issuer,
                audience=self._audience,
                leeway=CLOCK_SKEW_LEEWAY_S,
                options={
                    "require": ["exp", "sub", "role"],
                    "verify_aud": self._audience is not None,
                    "verify_iss": self._issuer is not None,
                },
            )
        except jwt.PyJWTError as error:
            raise InvalidToken(str(error)) from error
        expires_at = float(claims["exp"])
        issued_at = float(claims.get("iat", self._clock()))
        if expires_at - issued_at > self._max_lifetime_s:
            raise InvalidToken(f"the token lives longer than {self._max_lifetime_s:.0f} s")
        return principal_from_claims(claims), expires_at


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    try:
        role = Role(claims["role"])
    except ValueError as error:
        raise InvalidToken("unknown role") from error
    org = claims.get("org")
    if role is Role.EMPLOYER and not (isinstance(org, str) and org):
        raise InvalidToken("an employer token needs an org claim")
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject:
        raise InvalidToken("the sub claim must be a non-empty string")
    email = claims.get("email")
    verified = isinstance(email, str) and email and claims.get("email_verified") is not False
    return Principal(
        user_id=subject,
        role=role,
        org=org if isinstance(org, str) else None,
        email=email if verified else None,
    )


_bearer = HTTPBearer(auto_error=False, description="A JWT minted by the identity provider")


def _unauthorized(detail: str) -> Problem:
    return Problem(401, detail, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


async def authenticated_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise Problem(401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    verifier: JwtVerifier = request.app.state.jwt_verifier
    try:
        return await verifier.verify(credentials.credentials)
    except InvalidToken as error:
        raise _unauthorized(f"invalid token: {error}") from error


Authenticated = Annotated[Principal, Depends(authenticated_principal)]
"""A route parameter of this type requires a valid token of any role."""


def require_role(*roles: Role) -> Any:
    """A dependency: the caller must hold one of `roles` (403 otherwise)."""
    allowed = frozenset(roles)

    async def check(principal: Authenticated) -> Principal:
        if principal.role not in allowed:
            names = " or ".join(sorted(role.value for role in allowed))
            raise Problem(403, f"this action needs the {names} role")
        return principal

    return Depends(check)
