"""Bearer-JWT authentication and role checks (CONTRACT.md, "Authentication and roles").

Local runs and tests sign with HS256 and `JWT_SECRET`. `alg: none`, another algorithm, a wrong
signature, issuer or audience (when configured) and an expired token all give 401; a valid token
without the role a route needs gives 403. Ownership (the `org` claim, the `sub`) is checked by
each route against the resource it touches.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from hirestream.shared.web.problems import Problem

CLOCK_SKEW_LEEWAY_S = 30


class Role(StrEnum):
    EMPLOYER = "employer"
    CANDIDATE = "candidate"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the verified claims a route decides with."""

    user_id: str
    role: Role
    org: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


class InvalidToken(Exception):
    """The token cannot be trusted; the message says why (never the token itself)."""


class JwtVerifier:
    """Verifies HS256 tokens signed with the shared secret."""

    algorithms = ("HS256",)

    def __init__(
        self, secret: str, *, issuer: str | None = None, audience: str | None = None
    ) -> None:
        self._secret = secret
        self._issuer = issuer
        self._audience = audience

    def verify(self, token: str) -> Principal:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=list(self.algorithms),
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
        return principal_from_claims(claims)


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
    return Principal(user_id=subject, role=role, org=org if isinstance(org, str) else None)


_bearer = HTTPBearer(auto_error=False, description="A JWT minted by the identity provider")

Verify = Callable[[str], Principal | Awaitable[Principal]]


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
        return verifier.verify(credentials.credentials)
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
