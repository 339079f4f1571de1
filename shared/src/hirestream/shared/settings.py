"""Settings every hirestream process reads from its environment.

The variable names are part of the contract (README, "Configuration"), the
same in compose, Kubernetes, the local stack and the tests. A missing or malformed setting stops
the process at start-up with one line that names the variable: `load_settings` does that.
"""

from __future__ import annotations

import re
import sys
from enum import StrEnum
from typing import Annotated, NoReturn, TypeVar

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class LogFormat(StrEnum):
    JSON = "json"
    CONSOLE = "console"


class KafkaSecurityProtocol(StrEnum):
    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"


class KafkaSaslMechanism(StrEnum):
    PLAIN = "PLAIN"
    SCRAM_SHA_256 = "SCRAM-SHA-256"
    SCRAM_SHA_512 = "SCRAM-SHA-512"


Port = Annotated[int, Field(ge=1, le=65535)]
DatabaseName = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9_-]+$")]


class ConnectionSettings(BaseSettings):
    """How to reach Kafka and MongoDB: what every process needs, the services and the operator
    CLI alike (which must not need a service's secrets such as JWT_SECRET)."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_security_protocol: KafkaSecurityProtocol = KafkaSecurityProtocol.PLAINTEXT
    kafka_sasl_mechanism: KafkaSaslMechanism | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = None
    # Used only when a service creates a missing topic itself (local runs, tests); where
    # topics are managed (Strimzi KafkaTopic resources) they already exist.
    kafka_topic_partitions: int = Field(default=3, ge=1)
    kafka_topic_replication: int = Field(default=1, ge=1)
    # Retention of topics whose events carry personal data (30 days): the bound on how long
    # an erased candidate's name can still be read from Kafka.
    kafka_personal_data_retention_ms: int = Field(default=30 * 24 * 3600 * 1000, ge=60_000)

    mongodb_url: SecretStr = SecretStr("mongodb://127.0.0.1:27017")
    mongodb_database: DatabaseName = "hirestream"

    @model_validator(mode="after")
    def _sasl_identity(self) -> ConnectionSettings:
        if self.kafka_security_protocol in {
            KafkaSecurityProtocol.SASL_PLAINTEXT,
            KafkaSecurityProtocol.SASL_SSL,
        } and not (self.kafka_sasl_mechanism and self.kafka_sasl_username):
            raise ValueError(
                "KAFKA_SASL_MECHANISM and KAFKA_SASL_USERNAME are required with SASL security"
            )
        return self


class ServiceSettings(ConnectionSettings):
    """What all three services need. Each service subclasses it for its own defaults."""

    # Production unless said otherwise: the strict choice is the default one.
    environment: Environment = Environment.PRODUCTION

    jwt_secret: SecretStr | None = None
    jwt_jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    # Tokens whose lifetime (exp - iat, or exp - now without iat) is longer are refused.
    jwt_max_lifetime_s: float = Field(default=24 * 3600, gt=0)

    smtp_host: str = "127.0.0.1"
    smtp_port: Port = 1025

    # Abuse limits (see web/guard.py): request bodies, JSON nesting, writes per client.
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_json_depth: int = Field(default=32, ge=2, le=256)
    rate_limit_writes: str = Field(default="120/minute", pattern=r"^\d+\s*/\s*\w+$")

    log_level: str = Field(default="INFO", pattern=r"^(?i:DEBUG|INFO|WARNING|ERROR|CRITICAL)$")
    log_format: LogFormat = LogFormat.JSON
    port: Port = 8000
    # /metrics is also served on this port when set, so a cluster can scrape it where its
    # ingress does not reach (the API port's /metrics stays for local runs).
    metrics_port: Port | None = None

    # How long a graceful shutdown may take before in-flight work is abandoned (seconds).
    # Kubernetes' terminationGracePeriodSeconds must be longer than this.
    shutdown_timeout_s: float = Field(default=20.0, gt=0)
    # How long an outbox relay's claim on a document holds. A relay that died holding one is
    # overtaken by the sweep after this; longer than any publish should take.
    outbox_lease_s: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _jwt_key_source(self) -> ServiceSettings:
        if self.jwt_secret is None and self.jwt_jwks_url is None:
            raise ValueError("JWT_SECRET or JWT_JWKS_URL must be set")
        if self.jwt_secret is not None:
            secret = self.jwt_secret.get_secret_value()
            if len(secret) < 32:
                raise ValueError("JWT_SECRET must be at least 32 characters (HS256 key strength)")
            if self.environment is Environment.PRODUCTION and looks_like_placeholder(secret):
                raise ValueError(
                    "JWT_SECRET looks like a placeholder; outside ENVIRONMENT=development it "
                    "must be a random value (e.g. python -c 'import secrets; "
                    "print(secrets.token_urlsafe(48))')"
                )
        return self


PLACEHOLDER_WORDS = (
    "changeme",
    "change-me",
    "change_me",
    "placeholder",
    "example",
    "secret",
    "password",
    "default",
    "dev",
    "test",
    "local",
)


def looks_like_placeholder(secret: str) -> bool:
    """A word people leave in config files (as a word of its own: "my-dev-secret"), or too
    few distinct characters to be random."""
    words = set(re.split(r"[^a-z0-9]+", secret.lower()))
    return bool(words & set(PLACEHOLDER_WORDS)) or len(set(secret)) < 12


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def describe_settings_error(error: ValidationError) -> str:
    """One line naming the environment variable(s) at fault and why, without their values."""
    parts = []
    for item in error.errors():
        location = [str(part) for part in item["loc"]]
        name = "_".join(location).upper() if location else "settings"
        message = item["msg"].removeprefix("Value error, ")
        parts.append(f"{name}: {message}" if location else message)
    return "invalid configuration: " + "; ".join(parts)


def load_settings(settings_class: type[SettingsT]) -> SettingsT:
    """Read settings from the environment, or stop the process with one clear line."""
    try:
        return settings_class()
    except ValidationError as error:
        exit_with(describe_settings_error(error))


def exit_with(line: str) -> NoReturn:
    print(f"error: {line}", file=sys.stderr)  # logging is not configured yet: plain stderr
    raise SystemExit(2)
