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

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN
