"""What the applications read model stores from each posting event."""

from datetime import UTC, datetime

from hirestream.applications.domain import PostingView
from hirestream.shared.events.postings import CloseReason, PostingClosed, PostingStatus

NOW = datetime(2026, 11, 28, tzinfo=UTC)


def test_a_closing_does_not_erase_fields_it_does_not_carry() -> None:
    closed = PostingClosed(
        posting_id="p1", org="acme", reason=CloseReason.FILLED, version=3, closed_at=NOW
    )
    fields = PostingView.from_closed(closed).fields_to_store()
    assert fields["status"] is PostingStatus.CLOSED
    assert fields["version"] == 3
    assert "title" not in fields
    assert "skills" not in fields
