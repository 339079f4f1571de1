"""Event entrypoint of the postings service: it consumes only erasure requests.

Postings hold no candidate data (a posting's contact address is the employer's), so an
erasure anonymises nothing here; the service still confirms, so that a requester can see
every service has answered.
"""

from __future__ import annotations

from faststream.kafka import KafkaBroker

from hirestream.shared.privacy import ErasureLedger, register_erasure

GROUP_ID = "postings.privacy"


async def _nothing_held(candidate_id: str) -> dict[str, int]:
    return {}


def register_consumers(broker: KafkaBroker, ledger: ErasureLedger) -> None:
    register_erasure(
        broker,
        ledger,
        group_id=GROUP_ID,
        anonymise=_nothing_held,
        kept=["postings hold no candidate data"],
    )
