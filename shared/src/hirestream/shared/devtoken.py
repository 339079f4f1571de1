"""Mint a development token: `python -m hirestream.shared.devtoken --role employer --org acme`.

Signs HS256 with `JWT_SECRET` from the environment, the same secret the services verify with.
For local runs and tests only: production tokens come from the identity provider.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from datetime import UTC, datetime, timedelta

import jwt

from hirestream.shared.identity import Role


def mint_token(
    secret: str,
    *,
    role: Role | str,
    sub: str | None = None,
    org: str | None = None,
    email: str | None = None,
    ttl: timedelta = timedelta(hours=1),
    issuer: str | None = None,
    audience: str | None = None,
) -> str:
    now = datetime.now(UTC)
    claims: dict[str, object] = {
        "sub": sub or f"{Role(role).value}-{uuid.uuid4().hex[:8]}",
        "role": Role(role).value,
        "iat": now,
        "exp": now + ttl,
    }
    if org:
        claims["org"] = org
    if email:
        claims["email"] = email
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm="HS256")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--role", required=True, choices=[role.value for role in Role])
    parser.add_argument("--sub", help="user id (default: a random one)")
    parser.add_argument("--org", help="employer id (required for --role employer)")
    parser.add_argument("--email", help="the user's verified address (a candidate applies with it)")
    parser.add_argument("--ttl-minutes", type=int, default=60)
    args = parser.parse_args(argv)
    secret = os.environ.get("JWT_SECRET")
    if not secret:
        print("error: JWT_SECRET is not set", file=sys.stderr)
        return 2
    if args.role == Role.EMPLOYER and not args.org:
        print("error: --org is required for an employer token", file=sys.stderr)
        return 2
    print(
        mint_token(
            secret,
            role=args.role,
            sub=args.sub,
            org=args.org,
            email=args.email,
            ttl=timedelta(minutes=args.ttl_minutes),
            issuer=os.environ.get("JWT_ISSUER"),
            audience=os.environ.get("JWT_AUDIENCE"),
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
