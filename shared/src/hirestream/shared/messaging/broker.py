"""One place that builds the FastStream Kafka broker the way every service needs it.

Producers: `acks=all` and idempotence, so an acknowledged event survives a broker failure and a
producer retry never writes it twice. Consumers (see `consuming.py`): an explicit group id, and
offsets committed only after the handler finished, never before.
"""

from __future__ import annotations

import logging
import ssl

from faststream.kafka import KafkaBroker
from faststream.security import (
    BaseSecurity,
    SASLPlaintext,
    SASLScram256,
    SASLScram512,
)

from hirestream.shared.settings import KafkaSaslMechanism, KafkaSecurityProtocol, ServiceSettings


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


def make_broker(settings: ServiceSettings, *, client_id: str) -> KafkaBroker:
    return KafkaBroker(
        # A list: given the comma-separated string whole, aiokafka takes it for one host name.
        [server.strip() for server in settings.kafka_bootstrap_servers.split(",")],
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        security=kafka_security(settings),
        # On shutdown the broker waits this long for handlers in flight to finish.
        graceful_timeout=settings.shutdown_timeout_s,
        # Through the root logger, so FastStream's lines are structlog lines like ours
        # (its default logger has a handler and colours of its own).
        logger=logging.getLogger("hirestream.faststream"),
        # Our subscribers log what they do with event ids; FastStream's per-message lines
        # would repeat that at INFO for every record.
        log_level=logging.DEBUG,
    )
