"""Email that can be refused: the signed, expiring unsubscribe token, the List-Unsubscribe
headers every email carries, and the one-click use case that turns one kind of email off for
one recipient. No servers: the token at fixed times, the use case on in-memory fakes."""

from __future__ import annotations

import base64
import email
import email.policy
import json
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from urllib.parse import parse_qs, urlsplit

import pytest

from hirestream.notifications import services
from hirestream.notifications.delivery import DeliveryWorker
from hirestream.notifications.domain import (
    APPLICATION_SUBMITTED,
    POSTING_CLOSED,
    POSTING_CREATED,
    InvalidUnsubscribeToken,
    ListUnsubscribe,
    Preferences,
    UnsubscribeLinks,
    UnsubscribeScope,
    org_recipient,
    user_recipient,
)
from hirestream.notifications.email import notification_email
from hirestream.shared.events.notifications import Channel
from hirestream.shared.events.types import utc_now
from hirestream.shared.service_layer.errors import InvalidRequest
from tests.support.fakes import RecordingPublisher
from tests.support.notifications import stored_notification
from tests.support.notifications_fakes import (
    FakeMailer,
    FakeNotifications,
    FakeWebhookPoster,
    FakeWebhooks,
    NotificationsFakes,
)

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
LIFETIME = timedelta(days=90)
KEY = b"k" * 16 + b"0123456789abcdef"
CANDIDATE = user_recipient("cand-7f3a9c1e")
SCOPE = UnsubscribeScope(CANDIDATE, APPLICATION_SUBMITTED)


def links(key: bytes = KEY, lifetime: timedelta = LIFETIME) -> UnsubscribeLinks:
    return UnsubscribeLinks(
        key=key,
        base_url="https://notifications.api.hirestream.dev/",
        mailto_address="unsubscribe@hirestream.dev",
        lifetime=lifetime,
    )


def claims_of(token: str) -> dict[str, object]:
    part = token.split(".")[1]
    decoded: dict[str, object] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


def with_claims(token: str, **changes: object) -> str:
    """The token with its claims changed and its MAC left as it was (a forgery)."""
    version, _, mac = token.split(".")
    claims = json.dumps({**claims_of(token), **changes}, separators=(",", ":"), sort_keys=True)
    part = base64.urlsafe_b64encode(claims.encode()).rstrip(b"=").decode()
    return f"{version}.{part}.{mac}"


# --------------------------------------------------------------------------------- the token


def test_a_token_grants_its_scope_until_it_expires() -> None:
    token = links().token(SCOPE, now=NOW)
    assert links().read(token, now=NOW) == SCOPE
    assert links().read(token, now=NOW + LIFETIME - timedelta(seconds=1)) == SCOPE


def test_the_token_carries_the_recipient_the_kind_and_the_expiry() -> None:
    claims = claims_of(links().token(SCOPE, now=NOW))
    assert claims == {
        "r": CANDIDATE,
        "k": APPLICATION_SUBMITTED,
        "x": int((NOW + LIFETIME).timestamp()),
    }


@pytest.mark.parametrize("after", [LIFETIME, LIFETIME + timedelta(days=1)])
def test_an_expired_token_is_refused(after: timedelta) -> None:
    token = links().token(SCOPE, now=NOW)
    with pytest.raises(InvalidUnsubscribeToken, match="expired"):
        links().read(token, now=NOW + after)


@pytest.mark.parametrize(
    "changes",
    [
        {"r": user_recipient("someone-else")},
        {"k": POSTING_CREATED},
        {"x": int((NOW + timedelta(days=3650)).timestamp())},  # a longer life
    ],
    ids=["recipient", "kind", "expiry"],
)
def test_a_token_whose_claims_were_changed_does_not_verify(changes: dict[str, object]) -> None:
    forged = with_claims(links().token(SCOPE, now=NOW), **changes)
    with pytest.raises(InvalidUnsubscribeToken, match="does not verify"):
        links().read(forged, now=NOW)


def test_a_token_signed_with_another_key_does_not_verify() -> None:
    token = links(key=b"another-key-" + b"x" * 24).token(SCOPE, now=NOW)
    with pytest.raises(InvalidUnsubscribeToken, match="does not verify"):
        links().read(token, now=NOW)


def test_a_changed_mac_does_not_verify() -> None:
    token = links().token(SCOPE, now=NOW)
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    with pytest.raises(InvalidUnsubscribeToken, match="does not verify"):
        links().read(flipped, now=NOW)


@pytest.mark.parametrize(
    "token",
    ["", "u1", "u1..", "u1.abc", "v2.abc.def", "u1.abc.dé", "not a token at all"],
)
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(InvalidUnsubscribeToken):
        links().read(token, now=NOW)


def test_a_signed_token_for_no_known_kind_is_refused() -> None:
    token = links().token(UnsubscribeScope(CANDIDATE, "posting.deleted"), now=NOW)
    with pytest.raises(InvalidUnsubscribeToken, match="no kind"):
        links().read(token, now=NOW)


def test_the_links_are_the_one_click_url_and_a_mailto() -> None:
    made = links().links(SCOPE, now=NOW)
    url = urlsplit(made.url)
    assert (url.scheme, url.netloc, url.path) == (
        "https",
        "notifications.api.hirestream.dev",
        "/unsubscribe",
    )
    [token] = parse_qs(url.query)["token"]
    assert links().read(token, now=NOW) == SCOPE
    assert made.mailto == "mailto:unsubscribe@hirestream.dev?subject=unsubscribe"


def test_the_key_is_not_in_the_links_repr() -> None:
    assert "0123456789abcdef" not in repr(links())


# ------------------------------------------------------------------------------- the email


def sent(message: EmailMessage) -> EmailMessage:
    """The message as a mail app reads it from the wire."""
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_every_email_offers_one_click_unsubscribe_and_a_mailto() -> None:
    made = links().links(SCOPE, now=NOW)
    message = sent(notification_email("n@hirestream.dev", "c@example.com", "Title", "Body", made))
    assert str(message["List-Unsubscribe"]) == f"<{made.url}>, <{made.mailto}>"
    assert str(message["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"


def test_the_unsubscribe_url_is_never_folded_into_encoded_words() -> None:
    long = ListUnsubscribe("https://n.example/unsubscribe?token=" + "a" * 300, "mailto:u@n.example")
    raw = notification_email("n@hirestream.dev", "c@example.com", "T", "B", long).as_bytes()
    assert b"=?utf-8?" not in raw
    assert max(len(line) for line in raw.splitlines()) <= 998
    assert f"<{long.url}>".encode() in raw


def test_an_email_has_a_plain_text_and_an_html_part() -> None:
    message = sent(
        notification_email(
            "n@hirestream.dev",
            "c@example.com",
            "Title <b>",
            "Body & more",
            links().links(SCOPE, now=NOW),
        )
    )
    assert message.get_content_type() == "multipart/alternative"
    parts = {part.get_content_type(): part.get_content() for part in message.iter_parts()}
    assert set(parts) == {"text/plain", "text/html"}
    assert "Body & more" in parts["text/plain"]
    assert "Body &amp; more" in parts["text/html"]  # escaped in HTML
    assert "Title &lt;b&gt;" in parts["text/html"]


async def test_the_worker_gives_each_email_links_for_its_recipient_and_kind() -> None:
    queue, mailer = FakeNotifications(), FakeMailer()
    worker = DeliveryWorker(
        queue,
        mailer,
        FakeWebhookPoster(),
        FakeWebhooks().by_id,
        RecordingPublisher(),
        source="hirestream/notifications",
        unsubscribe=links(),
    )
    notification = stored_notification(
        CANDIDATE, "a1", channel=Channel.EMAIL, email="ada@example.com"
    )
    queue.put(notification)

    await worker.attempt(notification, now=utc_now())

    [made] = mailer.unsubscribe
    assert made is not None
    [token] = parse_qs(urlsplit(made.url).query)["token"]
    assert links().read(token, now=utc_now()) == UnsubscribeScope(CANDIDATE, notification.kind)


# ------------------------------------------------------------------------- the use case


@pytest.fixture
def fakes() -> NotificationsFakes:
    return NotificationsFakes()


def token_for(scope: UnsubscribeScope) -> str:
    return links().token(scope, now=utc_now())


async def test_unsubscribing_turns_that_kinds_email_off_and_keeps_its_other_channels(
    fakes: NotificationsFakes,
) -> None:
    scope = await services.unsubscribe(token_for(SCOPE), fakes.uow(), links=links())

    assert scope == SCOPE
    chosen = await fakes.preferences.get(CANDIDATE)
    assert chosen.effective()[APPLICATION_SUBMITTED] == [Channel.IN_APP, Channel.WEBHOOK]
    assert not chosen.wants(APPLICATION_SUBMITTED, Channel.EMAIL)
    # Other kinds keep their channels, email included.
    assert chosen.wants(POSTING_CREATED, Channel.EMAIL)
    assert chosen.wants(POSTING_CLOSED, Channel.EMAIL)


async def test_unsubscribing_keeps_the_choices_already_made(fakes: NotificationsFakes) -> None:
    await fakes.preferences.put(
        CANDIDATE, Preferences(channels={POSTING_CREATED: [Channel.IN_APP]})
    )
    await services.unsubscribe(token_for(SCOPE), fakes.uow(), links=links())
    chosen = await fakes.preferences.get(CANDIDATE)
    assert chosen.channels == {
        POSTING_CREATED: [Channel.IN_APP],
        APPLICATION_SUBMITTED: [Channel.IN_APP, Channel.WEBHOOK],
    }


async def test_unsubscribing_twice_changes_nothing_more(fakes: NotificationsFakes) -> None:
    token = token_for(SCOPE)
    await services.unsubscribe(token, fakes.uow(), links=links())
    once = await fakes.preferences.get(CANDIDATE)
    await services.unsubscribe(token, fakes.uow(), links=links())
    assert await fakes.preferences.get(CANDIDATE) == once


async def test_an_org_unsubscribes_its_own_email_only(fakes: NotificationsFakes) -> None:
    org = org_recipient("acme")
    await services.unsubscribe(
        token_for(UnsubscribeScope(org, POSTING_CLOSED)), fakes.uow(), links=links()
    )
    assert not (await fakes.preferences.get(org)).wants(POSTING_CLOSED, Channel.EMAIL)
    assert (await fakes.preferences.get(org)).wants(POSTING_CLOSED, Channel.IN_APP)
    assert fakes.preferences.chosen.keys() == {org}


async def test_a_bad_token_is_an_invalid_request_naming_the_token_and_changes_nothing(
    fakes: NotificationsFakes,
) -> None:
    forged = with_claims(token_for(SCOPE), r=user_recipient("victim"))
    with pytest.raises(InvalidRequest) as refused:
        await services.unsubscribe(forged, fakes.uow(), links=links())
    assert refused.value.extensions["errors"] == [
        {"field": "token", "message": "the token does not verify"}
    ]
    assert fakes.preferences.chosen == {}


async def test_an_expired_token_changes_nothing(fakes: NotificationsFakes) -> None:
    old = links().token(SCOPE, now=utc_now() - LIFETIME - timedelta(minutes=1))
    with pytest.raises(InvalidRequest, match="expired"):
        await services.unsubscribe(old, fakes.uow(), links=links())
    assert fakes.preferences.chosen == {}
