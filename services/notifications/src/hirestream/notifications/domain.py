"""Notifications: who is told what, on which channel, and what a job alert matches.

Pure: no I/O and no framework imports. The event handlers ask this module for a plan (the
notifications one event causes); the store makes each of them exactly once, keyed by
`notification_id(event id, recipient, channel)`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

from hirestream.shared.events.applications import (
    ApplicationStatus,
    ApplicationStatusChanged,
    ApplicationSubmitted,
)
from hirestream.shared.events.envelope import CloudEvent, EventType
from hirestream.shared.events.notifications import (
    NOTIFICATION_DELIVERED,
    Channel,
    DeliveryOutcome,
    NotificationDelivered,
)
from hirestream.shared.events.postings import (
    CloseReason,
    PostingClosed,
    PostingCreated,
    Seniority,
    Workplace,
)
from hirestream.shared.events.privacy import ERASED_EMAIL
from hirestream.shared.events.types import (
    NonNegativeInt64,
    UtcDateTime,
    normalised_skills,
)
from hirestream.shared.identity import Principal, Role

POSTING_CREATED = "posting.created"
POSTING_CLOSED = "posting.closed"
APPLICATION_SUBMITTED = "application.submitted"
APPLICATION_STATUS_CHANGED = "application.status_changed"
# The kinds people are told of, each with its own channel preferences.
EVENT_KINDS = (POSTING_CREATED, POSTING_CLOSED, APPLICATION_SUBMITTED, APPLICATION_STATUS_CHANGED)
# The event types a webhook may subscribe to. Not `posting.closed`: only an expiry is told (to
# the inbox and by email), and a webhook subscribed to it would expect every close.
WEBHOOK_EVENT_TYPES = (POSTING_CREATED, APPLICATION_SUBMITTED, APPLICATION_STATUS_CHANGED)

_NAMESPACE = uuid.UUID("5d0c1c35-4f3a-4b7e-9a34-6c1f2e0b7a10")


def notification_id(event_id: str, recipient: str, channel: Channel) -> str:
    """The same event, recipient and channel always give the same id: redelivery is a no-op."""
    return str(uuid.uuid5(_NAMESPACE, f"{event_id}|{recipient}|{channel.value}"))


# Names the ids of `notification.delivered` events.
_DELIVERED_NAMESPACE = uuid.UUID("5b0f6f55-6c4e-4d43-9a36-2f8f1f0f7d01")


def delivered_event_id(notification_id: str) -> str:
    """The id of a notification's one `notification.delivered` event, whoever publishes it
    and however often: a copy after a crash has the same id, and consumers drop it."""
    return str(uuid.uuid5(_DELIVERED_NAMESPACE, notification_id))


# --------------------------------------------------------------------------- recipients


def user_recipient(user_id: str) -> str:
    return f"user:{user_id}"


def org_recipient(org: str) -> str:
    """An employer's inbox belongs to its org: every recruiter of the org shares it."""
    return f"org:{org}"


# ------------------------------------------------------------------------- preferences


DEFAULT_CHANNELS: Mapping[str, frozenset[Channel]] = {
    POSTING_CREATED: frozenset({Channel.IN_APP, Channel.EMAIL}),
    POSTING_CLOSED: frozenset({Channel.IN_APP, Channel.EMAIL}),
    APPLICATION_SUBMITTED: frozenset({Channel.IN_APP, Channel.EMAIL, Channel.WEBHOOK}),
    APPLICATION_STATUS_CHANGED: frozenset({Channel.IN_APP, Channel.EMAIL, Channel.WEBHOOK}),
}


class Preferences(BaseModel):
    """Per event kind, the channels a recipient wants. Kinds left out keep the defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channels: dict[str, list[Channel]] = Field(default_factory=dict)

    @field_validator("channels")
    @classmethod
    def _known_kinds(cls, value: dict[str, list[Channel]]) -> dict[str, list[Channel]]:
        unknown = sorted(set(value) - set(EVENT_KINDS))
        if unknown:
            raise ValueError(f"unknown event kinds {unknown}; known: {list(EVENT_KINDS)}")
        return {kind: sorted(set(channels)) for kind, channels in value.items()}

    def wants(self, kind: str, channel: Channel) -> bool:
        chosen = self.channels.get(kind)
        return channel in (DEFAULT_CHANNELS.get(kind, frozenset()) if chosen is None else chosen)

    def effective(self) -> dict[str, list[Channel]]:
        return {
            kind: sorted(self.channels.get(kind, DEFAULT_CHANNELS[kind])) for kind in EVENT_KINDS
        }

    def without(self, kind: str, channel: Channel) -> Preferences:
        """These preferences with `channel` turned off for `kind`, the kind's other channels
        as they were (its defaults, when it had no choice of its own)."""
        kept = [c for c in self.effective()[kind] if c is not channel]
        return Preferences(channels={**self.channels, kind: kept})


# ------------------------------------------------------------------------------ alerts


class AlertCriteria(BaseModel):
    """A saved job search: the body of `POST /alerts`. Every criterion given must hold."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    skills: list[str] = Field(default_factory=list, max_length=20)
    q: str | None = Field(default=None, max_length=200)
    city: str | None = Field(default=None, max_length=100)
    country: str | None = Field(default=None, pattern=r"^[A-Za-z]{2}$")
    workplace: Workplace | None = None
    seniority: Seniority | None = None
    min_salary: NonNegativeInt64 | None = Field(default=None, description="minor units")
    email: EmailStr | None = Field(default=None, description="where to email matches, if wanted")

    @field_validator("skills")
    @classmethod
    def _normalise(cls, value: list[str]) -> list[str]:
        return normalised_skills(value)

    def keys(self) -> list[str]:
        """Everything a matching posting must have, as index keys, most selective first."""
        keys = [f"city:{self.city.casefold()}"] if self.city else []
        keys += [f"skill:{skill}" for skill in self.skills]
        keys += [f"word:{word}" for word in words(self.q or "")]
        if self.country:
            keys.append(f"country:{self.country.upper()}")
        if self.seniority:
            keys.append(f"seniority:{self.seniority.value}")
        if self.workplace:
            keys.append(f"workplace:{self.workplace.value}")
        return keys

    def anchor(self) -> str:
        """The one key an alert is indexed under. A posting can only match alerts whose
        anchor is among its own keys, so matching reads the alerts under the posting's few
        dozen keys, never all alerts. Alerts without criteria match every posting."""
        keys = self.keys()
        return keys[0] if keys else MATCH_ALL

    def matches(self, posting: PostingCreated) -> bool:
        return set(self.keys()) <= set(posting_keys(posting)) and (
            self.min_salary is None
            or (posting.salary is not None and posting.salary.max >= self.min_salary)
        )


MATCH_ALL = "*"

_WORD = re.compile(r"[\w][\w+#.]*")


def words(text: str) -> list[str]:
    """Lower-case words, as the postings service splits them for its search."""
    found = (word.rstrip(".").lower() for word in _WORD.findall(text))
    return list(dict.fromkeys(word for word in found if word))


def posting_keys(posting: PostingCreated) -> list[str]:
    """The keys a posting offers to alerts (see `AlertCriteria.keys`)."""
    text = " ".join([posting.title, posting.company, posting.description, *posting.skills])
    keys = [f"city:{posting.location.city.casefold()}", f"country:{posting.location.country}"]
    keys += [f"skill:{skill}" for skill in posting.skills]
    keys += [f"word:{word}" for word in words(text)]
    keys += [f"seniority:{posting.seniority.value}", f"workplace:{posting.workplace.value}"]
    return list(dict.fromkeys(keys))


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class PlannedNotification:
    """One notification to make: for one recipient, on one channel."""

    recipient: str
    channel: Channel
    title: str
    body: str
    email: str | None = None  # the address, for the email channel


@dataclass(frozen=True)
class ApplicationFacts:
    """What notifications remembers of an application (from application.submitted), so that
    status changes can be told by email and to the right employer."""

    application_id: str
    candidate_id: str
    candidate_name: str
    candidate_email: str
    posting_id: str
    posting_title: str | None
    org: str
    contact_email: str | None


def _channels(
    recipient: str,
    kind: str,
    preferences: Mapping[str, Preferences],
    *,
    in_app: bool = True,
    email: str | None = None,
) -> list[tuple[Channel, str | None]]:
    prefs = preferences.get(recipient, Preferences())
    chosen: list[tuple[Channel, str | None]] = []
    if in_app and prefs.wants(kind, Channel.IN_APP):
        chosen.append((Channel.IN_APP, None))
    if email and email != ERASED_EMAIL and prefs.wants(kind, Channel.EMAIL):
        chosen.append((Channel.EMAIL, email))
    return chosen


def plan_posting_created(
    posting: PostingCreated,
    matching_alerts: Iterable[tuple[str, str | None]],
    preferences: Mapping[str, Preferences],
) -> list[PlannedNotification]:
    """Each candidate with a matching alert, once (several matching alerts: still once)."""
    title = f"New job: {posting.title}"
    body = f"{posting.company} is hiring in {posting.location.city} ({posting.workplace.value})."
    by_candidate: dict[str, str | None] = {}
    for candidate_id, email in matching_alerts:
        by_candidate[candidate_id] = by_candidate.get(candidate_id) or email
    return [
        PlannedNotification(recipient, channel, title, body, address)
        for candidate_id, email in by_candidate.items()
        for recipient in [user_recipient(candidate_id)]
        for channel, address in _channels(recipient, POSTING_CREATED, preferences, email=email)
    ]


def plan_application_submitted(
    application: ApplicationSubmitted,
    posting_title: str | None,
    contact_email: str | None,
    preferences: Mapping[str, Preferences],
) -> list[PlannedNotification]:
    """The candidate gets a confirmation; the posting's employer learns of a new applicant."""
    about = posting_title or f"posting {application.posting_id}"
    candidate = user_recipient(application.candidate.candidate_id)
    employer = org_recipient(application.org)
    planned = [
        PlannedNotification(
            candidate,
            channel,
            f"Application sent: {about}",
            "We passed your application on to the employer.",
            address,
        )
        for channel, address in _channels(
            candidate, APPLICATION_SUBMITTED, preferences, email=application.candidate.email
        )
    ]
    planned += [
        PlannedNotification(
            employer,
            channel,
            f"New applicant for {about}",
            f"{application.candidate.name} applied (skills match {application.match.score:.0%}).",
            address,
        )
        for channel, address in _channels(
            employer, APPLICATION_SUBMITTED, preferences, email=contact_email
        )
    ]
    return planned


def plan_status_changed(
    change: ApplicationStatusChanged,
    facts: ApplicationFacts | None,
    preferences: Mapping[str, Preferences],
) -> list[PlannedNotification]:
    """The candidate hears of every move; the employer hears when the candidate withdraws."""
    about = (facts.posting_title if facts else None) or f"posting {change.posting_id}"
    candidate = user_recipient(change.candidate_id)
    planned = [
        PlannedNotification(
            candidate,
            channel,
            f"Your application for {about}: {change.to_status.value}",
            f"Status changed from {change.from_status.value} to {change.to_status.value}.",
            address,
        )
        for channel, address in _channels(
            candidate,
            APPLICATION_STATUS_CHANGED,
            preferences,
            email=facts.candidate_email if facts else None,
        )
    ]
    if change.to_status is ApplicationStatus.WITHDRAWN:
        employer = org_recipient(change.org)
        name = facts.candidate_name if facts else "A candidate"
        planned += [
            PlannedNotification(
                employer,
                channel,
                f"Application withdrawn: {about}",
                f"{name} withdrew their application.",
                address,
            )
            for channel, address in _channels(
                employer,
                APPLICATION_STATUS_CHANGED,
                preferences,
                email=facts.contact_email if facts else None,
            )
        ]
    return planned


def plan_posting_expired(
    closed: PostingClosed,
    remembered_title: str | None,
    preferences: Mapping[str, Preferences],
) -> list[PlannedNotification]:
    """The employer org learns that its posting expired: in-app, and by email when the event
    names the posting's contact address. Other closes are the employer's own doing (filled,
    cancelled): nobody is told of them."""
    if closed.reason is not CloseReason.EXPIRED:
        return []
    about = closed.title or remembered_title or f"posting {closed.posting_id}"
    employer = org_recipient(closed.org)
    return [
        PlannedNotification(
            employer,
            channel,
            f"Your posting expired: {about}",
            "It no longer takes applications. Publish it again if the role is still open.",
            address,
        )
        for channel, address in _channels(
            employer, POSTING_CLOSED, preferences, email=closed.contact_email
        )
    ]


# ------------------------------------------------------------------------- unsubscribe


class InvalidUnsubscribeToken(ValueError):
    """An unsubscribe token that is malformed, does not verify, or expired; the message says
    which, never the token."""


@dataclass(frozen=True)
class UnsubscribeScope:
    """What one unsubscribe link turns off: email of one kind, for one recipient."""

    recipient: str
    kind: str


@dataclass(frozen=True)
class ListUnsubscribe:
    """The two ways of refusing an email, as its List-Unsubscribe header offers them."""

    url: str  # POST here, without login (RFC 8058 one-click)
    mailto: str


_LINK_FORMAT = "u1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class UnsubscribeLinks:
    """Signs and reads unsubscribe tokens: `u1.<claims>.<mac>`, the claims (recipient, kind,
    expiry in unix seconds) as base64url JSON, the MAC an HMAC-SHA256 of the version and the
    claims with the service's key. Only the token authorises its one change, so it must be
    unforgeable and expire."""

    key: bytes = field(repr=False)
    base_url: str
    mailto_address: str
    lifetime: timedelta

    def token(self, scope: UnsubscribeScope, *, now: datetime) -> str:
        expires = int((now + self.lifetime).timestamp())
        claims = json.dumps(
            {"r": scope.recipient, "k": scope.kind, "x": expires},
            separators=(",", ":"),
            sort_keys=True,
        )
        signed = f"{_LINK_FORMAT}.{_b64(claims.encode())}"
        return f"{signed}.{self._mac(signed)}"

    def read(self, token: str, *, now: datetime) -> UnsubscribeScope:
        """The scope a token grants; InvalidUnsubscribeToken if it is not one of ours, was
        changed, or expired."""
        version, _, rest = token.partition(".")
        claims_part, _, mac = rest.partition(".")
        if version != _LINK_FORMAT or not claims_part or not mac:
            raise InvalidUnsubscribeToken("the token is malformed")
        if not hmac.compare_digest(mac.encode(), self._mac(f"{version}.{claims_part}").encode()):
            raise InvalidUnsubscribeToken("the token does not verify")
        try:
            claims = json.loads(_unb64(claims_part))
            scope = UnsubscribeScope(recipient=str(claims["r"]), kind=str(claims["k"]))
            expires = int(claims["x"])
        except (ValueError, TypeError, KeyError, binascii.Error) as error:
            raise InvalidUnsubscribeToken("the token is malformed") from error
        if expires <= now.timestamp():
            raise InvalidUnsubscribeToken("the unsubscribe link expired")
        if scope.kind not in EVENT_KINDS:
            raise InvalidUnsubscribeToken("the token names no kind of notification")
        return scope

    def links(self, scope: UnsubscribeScope, *, now: datetime) -> ListUnsubscribe:
        token = self.token(scope, now=now)
        return ListUnsubscribe(
            url=f"{self.base_url.rstrip('/')}/unsubscribe?token={quote(token, safe='')}",
            mailto=f"mailto:{self.mailto_address}?subject=unsubscribe",
        )

    def _mac(self, signed: str) -> str:
        return _b64(hmac.new(self.key, signed.encode(), hashlib.sha256).digest())


# ---------------------------------------------------------------------------- webhooks


SIGNATURE_HEADER = "X-Hirestream-Signature"
# Secrets a rotation keeps valid besides the current one, at most: each adds a `v1=` to every
# delivery's signature header.
MAX_RETIRING_SECRETS = 3


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """`t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">` (docs/api.md, "Webhooks")."""
    return sign_all([secret], timestamp, body)


def sign_all(secrets: Sequence[str], timestamp: int, body: bytes) -> str:
    """One `v1=` per valid secret, the current one first: `t=<unix>,v1=<new>,v1=<old>`. A
    receiver accepts the request if any of them verifies with the secret it holds, so it may
    switch to a new secret at any time during the overlap."""
    signed = f"{timestamp}.".encode() + body
    signatures = [
        f"v1={hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()}" for secret in secrets
    ]
    return ",".join([f"t={timestamp}", *signatures])


# IPv6 forms that carry an IPv4 address a gateway or the host itself may turn into an IPv4
# connection, so a private IPv4 address could hide behind them: refused whatever they embed.
IPV6_TRANSITION_NETWORKS = tuple(
    ipaddress.IPv6Network(network)
    for network in (
        "64:ff9b::/96",  # NAT64, well-known prefix (RFC 6052)
        "64:ff9b:1::/48",  # NAT64, local-use prefix (RFC 8215)
        "2002::/16",  # 6to4 (RFC 3056)
        "2001::/32",  # Teredo (RFC 4380)
        "::/96",  # IPv4-compatible (deprecated, RFC 4291)
        "::ffff:0:0/96",  # IPv4-mapped (RFC 4291)
        "::ffff:0:0:0/96",  # IPv4-translated (RFC 2765)
    )
)


def forbidden_address(address: str) -> bool:
    """Addresses a webhook must never reach unless private targets are allowed: loopback,
    private ranges, link-local (cloud metadata at 169.254.169.254), multicast, and the IPv6
    transition forms that embed an IPv4 address."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and any(
        ip in network for network in IPV6_TRANSITION_NETWORKS
    ):
        return True
    return not ip.is_global or ip.is_multicast


def backoff_s(attempt: int, *, initial_s: float, max_s: float, jitter: float) -> float:
    """Exponential backoff with full jitter: a random wait in [0, min(max, initial·2^n)].
    `jitter` is a number in [0, 1) from the caller's random source (kept out for tests)."""
    return float(jitter * min(max_s, initial_s * 2 ** (attempt - 1)))


class WebhookRegistration(BaseModel):
    """The body of `POST /webhooks`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(min_length=8, max_length=2000)
    event_types: list[str] = Field(min_length=1, max_length=10)
    secret: str = Field(min_length=16, max_length=200)

    @field_validator("event_types")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(WEBHOOK_EVENT_TYPES))
        if unknown:
            raise ValueError(f"unknown event types {unknown}; known: {list(WEBHOOK_EVENT_TYPES)}")
        return sorted(set(value))


class SecretRotation(BaseModel):
    """The body of `POST /webhooks/{webhook_id}/secret`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    secret: str = Field(min_length=16, max_length=200)


def inbox_of(caller: Principal) -> str:
    """Whose inbox a caller reads: an employer reads its org's, everyone else their own."""
    if caller.role is Role.EMPLOYER and caller.org:
        return org_recipient(caller.org)
    return user_recipient(caller.user_id)


def webhook_owner(caller: Principal) -> str:
    """An employer's webhooks belong to its org (any recruiter of the org manages them)."""
    if caller.role is Role.EMPLOYER:
        return org_recipient(caller.org or "")
    return user_recipient(caller.user_id)


# ------------------------------------------------------------------------ notifications


class DeliveryFailed(Exception):
    """This attempt did not deliver; the message says why (no addresses, no content)."""

    status_code: int | None = None


class WebhookRefused(DeliveryFailed):
    """The receiver answered, with a status other than 2xx."""

    def __init__(self, status_code: int) -> None:
        super().__init__(f"webhook answered {status_code}")
        self.status_code = status_code


class DeliveryImpossible(DeliveryFailed):
    """No attempt can ever deliver (the webhook was deleted, the address erased): the delivery
    fails at once instead of being retried."""


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class DeliveryAttempt(BaseModel):
    """One try to deliver an email or a webhook notification."""

    model_config = ConfigDict(frozen=True)

    number: int
    at: UtcDateTime
    ok: bool
    status_code: int | None = None
    error: str | None = None
    duration_ms: float | None = None


class Notification(BaseModel):
    """One notification: for one recipient, on one channel, caused by one event. In-app ones
    are delivered by being stored (the inbox); email and webhook ones carry their delivery."""

    model_config = ConfigDict(frozen=True)

    notification_id: str
    recipient: str
    channel: Channel
    kind: str
    subject: str
    source_event_id: str
    correlation_id: str | None = None
    # The trace of the work that made it (`traceparent`, `tracestate`): its delivery joins it.
    trace_context: dict[str, str] | None = None
    created_at: UtcDateTime
    title: str | None = None
    body: str | None = None
    status: DeliveryStatus
    read: bool = False  # in-app
    email: str | None = None  # email: the address
    webhook_id: str | None = None  # webhook: the registration,
    payload: str | None = None  # and the CloudEvent it is sent
    attempts: list[DeliveryAttempt] = Field(default_factory=list)
    delivery_due_at: UtcDateTime | None = None  # pending: when the worker may take it

    @property
    def in_app(self) -> bool:
        return self.channel is Channel.IN_APP

    def delivered_event(
        self,
        outcome: DeliveryOutcome,
        *,
        attempts: int,
        at: datetime,
        source: str,
        error: str | None = None,
    ) -> CloudEvent[NotificationDelivered]:
        """The notification's one `notification.delivered` event, its final outcome. Its id is
        derived from the notification's, so a copy published again after a crash has the same
        id. It carries no address or content: the recipient is a user id or an org id."""
        delivered = NotificationDelivered(
            notification_id=self.notification_id,
            channel=self.channel,
            recipient=self.recipient,
            kind=self.kind,
            subject=self.subject,
            source_event_id=self.source_event_id,
            outcome=outcome,
            attempts=attempts,
            error=error,
            at=at,
        )
        return NOTIFICATION_DELIVERED.new(
            delivered,
            source=source,
            correlation_id=self.correlation_id,
            event_id=delivered_event_id(self.notification_id),
            time=at,
        )


class Alert(AlertCriteria):
    """A candidate's saved search, as stored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    alert_id: str
    candidate_id: str
    created_at: UtcDateTime


class RetiringSecret(BaseModel):
    """A webhook's former secret, still signing deliveries until `valid_until`."""

    model_config = ConfigDict(frozen=True)

    secret: str
    valid_until: UtcDateTime


class Webhook(WebhookRegistration):
    """A webhook registration, as stored (its secrets included: never shown back)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    webhook_id: str
    owner: str
    org: str | None  # None for an admin's webhook: it receives every org's events
    created_at: UtcDateTime
    previous_secrets: list[RetiringSecret] = Field(default_factory=list)

    def signing_secrets(self, now: datetime) -> list[str]:
        """The secrets a delivery is signed with now: the current one, then each former one
        whose overlap has not ended."""
        return [self.secret, *(p.secret for p in self.previous_secrets if p.valid_until > now)]

    def previous_valid_until(self, now: datetime) -> datetime | None:
        """When the last former secret stops signing deliveries; None if none does now."""
        return max(
            (p.valid_until for p in self.previous_secrets if p.valid_until > now), default=None
        )

    def retiring_after_rotation(self, *, now: datetime, overlap: timedelta) -> list[RetiringSecret]:
        """The former secrets once the current one is replaced: it signs on for `overlap`
        (none with a zero overlap), besides those still valid, newest first and at most
        MAX_RETIRING_SECRETS."""
        still_valid = [p for p in self.previous_secrets if p.valid_until > now]
        retiring = (
            [RetiringSecret(secret=self.secret, valid_until=now + overlap)] if overlap else []
        )
        return [*retiring, *still_valid][:MAX_RETIRING_SECRETS]


class WebhookPing(BaseModel):
    """The data of a `webhook.ping`: a test event that changes nothing."""

    model_config = ConfigDict(frozen=True)

    webhook_id: str
    message: str = "A test event from hirestream: your endpoint is reachable."


# Sent to one webhook on request, never over Kafka (so not in the shared event catalog).
WEBHOOK_PING = EventType(
    "webhook.ping", WebhookPing, subject_field="webhook_id", publishers=("notifications",)
)


@dataclass(frozen=True)
class AnnouncedPosting:
    """What notifications remembers of a posting from `posting.created`."""

    posting_id: str
    org: str
    title: str | None
    contact_email: str | None
