"""Event entrypoint of the postings service: it consumes only erasure requests.

Postings hold no candidate data (a posting's contact address is the employer's), so an erasure
anonymises nothing here; the service still confirms, so that a requester can see every service
has answered.
"""

from __future__ import annotations

from collections.abc import Callable

from hirestream.shared.messaging.subscriptions import Subscription
from hirestream.shared.privacy import Erasure, erasure_subscription
from hirestream.shared.service_layer.unit_of_work import UnitOfWork

PRIVACY_GROUP = "postings.privacy"
KEPT = ["postings hold no candidate data"]


async def _nothing_held(candidate_id: str) -> dict[str, int]:
    return {}


def subscriptions(erasures: Callable[[], UnitOfWork[Erasure]]) -> list[Subscription]:
    return [
        erasure_subscription(
            PRIVACY_GROUP, erasures, service="postings", anonymise=_nothing_held, kept=KEPT
        )
    ]
