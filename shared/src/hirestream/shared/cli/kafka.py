"""The CLI's Kafka clients, built from the services' settings, and their failures in one line.

Nothing here joins a consumer group or commits an offset: the consumer reads assigned
partitions, so the CLI leaves every group's offsets as it found them. Nothing asks the broker
about a topic that does not exist either: a metadata request for an unknown topic creates it
where `auto.create.topics.enable` is on (the local stack), so names are checked against the
topic list first.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    TopicAuthorizationFailedError,
)

from hirestream.shared.cli.errors import USAGE, CliError
from hirestream.shared.settings import (
    ConnectionSettings,
    KafkaSaslMechanism,
    KafkaSecurityProtocol,
)

DLQ_SUFFIX = ".dlq"
SASL = {KafkaSecurityProtocol.SASL_PLAINTEXT, KafkaSecurityProtocol.SASL_SSL}
TLS = {KafkaSecurityProtocol.SSL, KafkaSecurityProtocol.SASL_SSL}


def bootstrap_servers(settings: ConnectionSettings) -> list[str]:
    # A list: given the comma-separated string whole, aiokafka takes it for one host name.
    return [server.strip() for server in settings.kafka_bootstrap_servers.split(",")]


def client_options(settings: ConnectionSettings, *, timeout_s: float) -> dict[str, Any]:
    """aiokafka's keyword arguments for these settings (the same choices as the services'
    `kafka_security`, which takes a whole ServiceSettings)."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers(settings),
        "client_id": "hirestream-cli",
        "security_protocol": protocol.value,
        "request_timeout_ms": int(timeout_s * 1000),
    }
    if protocol in TLS:
        options["ssl_context"] = ssl.create_default_context(cafile=settings.kafka_ssl_cafile)
    if protocol in SASL:
        secret = settings.kafka_sasl_password
        options |= {
            "sasl_mechanism": (settings.kafka_sasl_mechanism or KafkaSaslMechanism.PLAIN).value,
            "sasl_plain_username": settings.kafka_sasl_username or "",
            "sasl_plain_password": secret.get_secret_value() if secret else "",
        }
    return options


def principal(settings: ConnectionSettings) -> str:
    """Who the broker takes this client for, as an error line names it."""
    if settings.kafka_security_protocol in SASL:
        return f"principal {settings.kafka_sasl_username!r}"
    return f"the anonymous principal (KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol})"


def require_credentials(settings: ConnectionSettings) -> None:
    """SASL without a password would only fail later, as a vague authentication error."""
    if settings.kafka_security_protocol not in SASL:
        return
    secret = settings.kafka_sasl_password
    if secret is None or not secret.get_secret_value():
        raise CliError(
            f"KAFKA_SASL_PASSWORD is not set: KAFKA_SECURITY_PROTOCOL="
            f"{settings.kafka_security_protocol} needs the password of "
            f"KAFKA_SASL_USERNAME ({settings.kafka_sasl_username})",
            exit_code=USAGE,
        )


class RecentClientLog(logging.Handler):
    """aiokafka says why a connection failed only in its log (the exception just says it could
    not bootstrap): the last lines are kept to explain a failure."""

    def __init__(self, size: int = 20) -> None:
        super().__init__(logging.WARNING)
        self.lines: deque[str] = deque(maxlen=size)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(record.getMessage())
        except Exception:  # a malformed log call must not break the command
            self.handleError(record)

    def clear(self) -> None:
        self.lines.clear()

    def containing(self, *words: str) -> str | None:
        """The latest line with any of `words` (case-insensitive)."""
        for line in reversed(self.lines):
            if any(word.lower() in line.lower() for word in words):
                return line
        return None


CLIENT_LOG = RecentClientLog()


def capture_client_log(*, verbose: bool) -> None:
    """Keep aiokafka's lines for the error messages; show them only with --verbose."""
    logger = logging.getLogger("aiokafka")
    logger.propagate = verbose
    if CLIENT_LOG not in logger.handlers:
        logger.addHandler(CLIENT_LOG)
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING)


def describe_kafka_error(error: BaseException, settings: ConnectionSettings) -> str:
    """One line for a Kafka failure, naming the principal when the broker refused it."""
    servers = settings.kafka_bootstrap_servers
    who = principal(settings)
    if isinstance(error, KafkaConnectionError):
        if CLIENT_LOG.containing("SaslAuthenticationFailed", "Authentication failed"):
            return (
                f"Kafka at {servers} refused the credentials of {who} "
                f"({settings.kafka_sasl_mechanism}): check KAFKA_SASL_USERNAME and "
                "KAFKA_SASL_PASSWORD"
            )
        closed = CLIENT_LOG.containing("closed")
        if settings.kafka_security_protocol not in SASL and closed:
            return (
                f"Kafka at {servers} closed the connection: it probably requires "
                "authentication, and no credentials are set (KAFKA_SECURITY_PROTOCOL, "
                "KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD)"
            )
        why = CLIENT_LOG.containing("Unable connect", "Unable to request", "closed") or str(error)
        return f"cannot reach Kafka at {servers} (KAFKA_BOOTSTRAP_SERVERS): {why}"
    if isinstance(error, TopicAuthorizationFailedError):
        return f"Kafka refused {who} access to topic {_names(error)} (no ACL grants it)"
    if isinstance(error, GroupAuthorizationFailedError):
        return f"Kafka refused {who} access to a consumer group: {_names(error)}"
    if isinstance(error, ClusterAuthorizationFailedError):
        return f"Kafka refused {who} a cluster operation (e.g. IdempotentWrite): {error}"
    refused = CLIENT_LOG.containing("not authorized")
    if isinstance(error, KafkaTimeoutError) and refused:
        return f"Kafka refused {who}: {refused}"
    if isinstance(error, KafkaTimeoutError):
        return f"Kafka at {servers} did not answer in time: {error}"
    return f"Kafka failed: {type(error).__name__}: {error}"


def _names(error: KafkaError) -> str:
    return ", ".join(str(arg) for arg in error.args) or type(error).__name__


class Kafka:
    """The clients of one command, started on first use (each start bounded by `timeout_s`)
    and stopped together."""

    def __init__(self, settings: ConnectionSettings, *, timeout_s: float) -> None:
        require_credentials(settings)
        self.settings = settings
        self.timeout_s = timeout_s
        self._options = client_options(settings, timeout_s=timeout_s)
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._topics: frozenset[str] | None = None

    async def __aenter__(self) -> Kafka:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        # Stopping the producer flushes what it holds; a broker gone by now is not news.
        for stop in (
            self._producer and self._producer.stop,
            self._consumer and self._consumer.stop,
            self._admin and self._admin.close,
        ):
            if stop:
                try:
                    async with asyncio.timeout(self.timeout_s):
                        await stop()
                except (KafkaError, TimeoutError, OSError):
                    pass

    async def _started(self, client: Any) -> None:
        CLIENT_LOG.clear()
        try:
            async with asyncio.timeout(self.timeout_s):
                await client.start()
        except TimeoutError:
            raise CliError(
                f"no answer from Kafka at {self.settings.kafka_bootstrap_servers} within "
                f"{self.timeout_s:g} s (KAFKA_BOOTSTRAP_SERVERS)"
            ) from None

    async def admin(self) -> AIOKafkaAdminClient:
        if self._admin is None:
            admin = AIOKafkaAdminClient(**self._options)
            await self._started(admin)
            self._admin = admin
        return self._admin

    async def consumer(self) -> AIOKafkaConsumer:
        """A consumer outside any group: it reads what it is assigned and commits nothing."""
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                **self._options,
            )
            await self._started(consumer)
            self._consumer = consumer
        return self._consumer

    async def producer(self) -> AIOKafkaProducer:
        """acks=all and idempotent, like the services' producers."""
        if self._producer is None:
            producer = AIOKafkaProducer(acks="all", enable_idempotence=True, **self._options)
            await self._started(producer)
            self._producer = producer
        return self._producer

    async def topics(self) -> frozenset[str]:
        """The topics this principal may see, internal ones left out."""
        if self._topics is None:
            admin = await self.admin()
            listed = await admin.list_topics()
            self._topics = frozenset(name for name in listed if not name.startswith("__"))
        return self._topics

    async def dead_letter_topics(self) -> list[str]:
        return sorted(name for name in await self.topics() if name.endswith(DLQ_SUFFIX))

    async def require_dead_letter_topic(self, topic: str) -> None:
        if topic.endswith(DLQ_SUFFIX) and topic in await self.topics():
            return
        known = ", ".join(await self.dead_letter_topics()) or "none"
        if topic.endswith(DLQ_SUFFIX):
            visible = ""
            if self.settings.kafka_security_protocol in SASL:
                visible = f" visible to {principal(self.settings)}"
            what = f"no topic {topic}{visible}"
        else:
            what = f"{topic} is not a dead-letter topic (their names end in {DLQ_SUFFIX})"
        raise CliError(f"{what} (known dead-letter topics: {known})", exit_code=USAGE)

    async def partitions(self, topics: Iterable[str]) -> list[TopicPartition]:
        """Every partition of these topics; ones that do not exist are left out (never
        described: describing one would create it)."""
        existing = await self.topics()
        wanted = sorted(set(topics) & existing)
        if not wanted:
            return []
        admin = await self.admin()
        described = await admin.describe_topics(wanted)
        for topic in described:
            if topic.get("error_code", 0) == TopicAuthorizationFailedError.errno:
                raise TopicAuthorizationFailedError(topic["topic"])
        return sorted(
            (
                TopicPartition(topic["topic"], partition["partition"])
                for topic in described
                if topic.get("error_code", 0) == 0
                for partition in topic["partitions"]
            ),
            key=lambda tp: (tp.topic, tp.partition),
        )
