"""Who is calling: the verified identity the use cases decide with (roles and ownership)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    EMPLOYER = "employer"
    CANDIDATE = "candidate"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    user_id: str
    role: Role
    org: str | None = None  # an employer's employer id
    email: str | None = None  # the address the identity provider verified, if it says one

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


def same_address(given: str, verified: str | None) -> bool:
    """Whether an address a caller gives is the one their token vouches for (the domain part
    compared without case, as mail systems do)."""
    if verified is None:
        return False
    local, _, domain = given.rpartition("@")
    verified_local, _, verified_domain = verified.rpartition("@")
    return local == verified_local and domain.casefold() == verified_domain.casefold()
