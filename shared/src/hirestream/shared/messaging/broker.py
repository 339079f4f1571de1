"""The FastStream Kafka broker, built the same way for every service.

Producers: `acks=all` and idempotence, so an acknowledged event survives a broker failure and a
producer retry never writes it twice. Every subscriber gets the dead-letter middleware; every
record received and published is counted by FastStream's Prometheus middleware.
"""

from __future__ import annotations

import logging
import ssl
from functools import partial

from faststream.kafka import KafkaBroker
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.security import (
    BaseSecurity,
    SASLPlaintext,
    SASLScram256,
    SASLScram512,
)
from prometheus_client import REGISTRY

from hirestream.shared.messaging.dead_letters import (
    DeadLetterMiddleware,
    DeadLetters,
    HandlerRetries,
)
from hirestream.shared.metrics import METRICS_PREFIX
from hirestream.shared.settings import KafkaSaslMechanism, KafkaSecurityProtocol, ServiceSettings
from hirestream.shared.tracing import tracing_enabled


def kafka_security(settings: ServiceSettings) -> BaseSecurity | None:
    protocol = settings.kafka_security_protocol
    if protocol is KafkaSecurityProtocol.PLAINTEXT:
        return None
    use_ssl = protocol in {KafkaSecurityProtocol.SSL, KafkaSecurityProtocol.SASL_SSL}
    context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile) if use_ssl else None
    if protocol is KafkaSecurityProtocol.SSL:
        return BaseSecurity(ssl_context=context, use_ssl=True)
    username = settings.kafka_sasl_username or ""
    secret = settings.kafka_sasl_password
    password = secret.get_secret_value() if secret else ""
    sasl_class = {
        KafkaSaslMechanism.PLAIN: SASLPlaintext,
        KafkaSaslMechanism.SCRAM_SHA_256: SASLScram256,
        KafkaSaslMechanism.SCRAM_SHA_512: SASLScram512,
    }[settings.kafka_sasl_mechanism or KafkaSaslMechanism.PLAIN]
    return sasl_class(username, password, ssl_context=context, use_ssl=use_ssl)


def bootstrap_servers(settings: ServiceSettings) -> list[str]:
    # A list: given the comma-separated string whole, aiokafka takes it for one host name.
    return [server.strip() for server in settings.kafka_bootstrap_servers.split(",")]


def kafka_metrics() -> KafkaPrometheusMiddleware:
    """FastStream's counts and durations of records received and published."""
    return KafkaPrometheusMiddleware(registry=REGISTRY, metrics_prefix=METRICS_PREFIX)


def kafka_tracing() -> list[KafkaTelemetryMiddleware]:
    """FastStream's spans of every publish and consume, when tracing is on (tracing.py)."""
    return [KafkaTelemetryMiddleware()] if tracing_enabled() else []


def make_broker(
    settings: ServiceSettings, *, client_id: str, retries: HandlerRetries | None = None
) -> KafkaBroker:
    broker = KafkaBroker(
        bootstrap_servers(settings),
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        security=kafka_security(settings),
        # On shutdown the broker waits this long for handlers in flight to finish.
        graceful_timeout=settings.shutdown_timeout_s,
        # Through the root logger, so FastStream's lines are structlog lines like ours.
        logger=logging.getLogger("hirestream.faststream"),
        # The dead-letter middleware logs each record's outcome with its event id; FastStream's
        # own per-message lines would repeat that at INFO.
        log_level=logging.DEBUG,
        middlewares=[*kafka_tracing(), kafka_metrics()],
    )
    install_dead_letters(broker, retries or HandlerRetries())
    return broker


def install_dead_letters(broker: KafkaBroker, retries: HandlerRetries) -> None:
    """Every subscriber of `broker`, now and later, gets retries and dead letters."""
    broker.add_middleware(
        partial(DeadLetterMiddleware, dead_letters=DeadLetters(broker), retries=retries)
    )
