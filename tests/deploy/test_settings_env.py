"""Every setting a service reads is given to it in compose and in Kubernetes, under the same
name, with a value the service accepts; secrets come from Secrets.

The variables are derived from each service's settings class (every pydantic field,
upper-cased). A setting may be left out only if it is listed below with the reason, and only
if it is optional (unset by default). Optional settings are left *out* rather than set to an
empty string on purpose: pydantic-settings reads `""` as a value, not as "unset" —
`KAFKA_SASL_MECHANISM=""` fails validation and `JWT_ISSUER=""` would demand an empty issuer.

Besides the settings, only the `OTEL_*` variables the tracing set-up honours may be set
(test_tracing.py checks their values).
"""

from __future__ import annotations

import re

import pytest

from tests.deploy.support import (
    FAKE_JWT_SECRET,
    FAKE_UNSUBSCRIBE_SECRET,
    Document,
    Rendered,
    raw_compose_env,
    service_names,
    settings_of,
    tracing_variables,
    validate_settings,
)

NO_KAFKA_TLS = "SASL_PLAINTEXT: SCRAM logins without TLS, on a private network"
SHARED_KEY = "HS256 tokens with JWT_SECRET (as ./dev.sh token mints them): no key set"

# Deliberately absent, per deployment target (compose, and each Kubernetes overlay).
ABSENT: dict[str, dict[str, str]] = {
    "compose": {
        "KAFKA_SSL_CAFILE": NO_KAFKA_TLS,
        "JWT_JWKS_URL": SHARED_KEY,
        "JWT_ISSUER": SHARED_KEY + ", no issuer",
        "JWT_AUDIENCE": SHARED_KEY + ", no audience",
        "SMTP_USERNAME": "Mailpit needs no login",
        "SMTP_PASSWORD": "Mailpit needs no login",
        "METRICS_PORT": "/metrics on the API port, which compose publishes on 127.0.0.1 only",
    },
    # In Kubernetes SMTP_USERNAME and SMTP_PASSWORD come from the optional Secret
    # notifications-smtp: set when the relay wants a login, unset otherwise.
    "dev": {
        "KAFKA_SSL_CAFILE": NO_KAFKA_TLS,
        "JWT_JWKS_URL": SHARED_KEY,
        "JWT_ISSUER": SHARED_KEY + ", no issuer",
        "JWT_AUDIENCE": SHARED_KEY + ", no audience",
    },
    "prod": {
        "JWT_SECRET": "tokens are verified against the identity provider's JWKS only",
    },
}

# Placeholders for the values Secrets hold, to check the rest of the settings validate.
SECRET_PLACEHOLDERS = {
    "JWT_SECRET": FAKE_JWT_SECRET,
    "UNSUBSCRIBE_SECRET": FAKE_UNSUBSCRIBE_SECRET,
    "MONGODB_URL": "mongodb://user:password@mongodb.example:27017/?replicaSet=rs0",
    "SMTP_USERNAME": "mailer",
    "SMTP_PASSWORD": "password",
    "KAFKA_SASL_PASSWORD": "password",
}

SERVICES = service_names()


def absent_in(target: str) -> dict[str, str]:
    assert target in ABSENT, f"say which settings {target} leaves unset (ABSENT above)"
    return ABSENT[target]


@pytest.mark.parametrize("target", sorted(ABSENT))
def test_only_optional_settings_may_be_absent(target: str) -> None:
    known = {name for service in SERVICES for name in settings_of(service)}
    for name in absent_in(target):
        assert name in known, f"{name} is listed as absent but no service reads it any more"
        for service in SERVICES:
            setting = settings_of(service).get(name)
            if setting is not None:
                assert setting.is_optional, f"{name} is required by {service}: it must be set"


@pytest.mark.parametrize("service", SERVICES)
def test_compose_sets_every_setting(compose: Document, service: str) -> None:
    env = {key: str(value) for key, value in compose["services"][service]["environment"].items()}
    settings = settings_of(service)
    missing = sorted(set(settings) - set(env) - set(absent_in("compose")))
    assert missing == [], f"compose {service}: settings not set (add them or list them absent)"
    unknown = sorted(set(env) - set(settings) - tracing_variables())
    assert unknown == [], f"compose {service}: variables no setting reads (typo?)"
    listed = sorted(set(env) & set(absent_in("compose")))
    assert listed == [], f"compose {service}: set, yet listed as deliberately absent"
    validate_settings(service, env)  # raises with the variable's name if a value is malformed


@pytest.mark.parametrize("service", SERVICES)
def test_compose_writes_down_no_secret(service: str) -> None:
    for name, value in raw_compose_env(service).items():
        setting = settings_of(service).get(name)
        if setting is None or not setting.is_secret:
            continue
        if "SECRET" in name or "PASSWORD" in name:
            # One variable of the environment, required (`${VAR:?why}`), nothing written down.
            assert re.fullmatch(r"\$\{[A-Z0-9_]+:\?[^}]*\}", value), (
                f"compose {service}: {name} must be required from the environment"
            )
        else:
            # A URL is a secret only for the credentials it may carry: none in compose.
            assert "@" not in value, f"compose {service}: {name} carries credentials"


@pytest.mark.parametrize("service", SERVICES)
def test_kubernetes_sets_every_setting(rendered: Rendered, service: str) -> None:
    settings = settings_of(service)
    names = rendered.env_names(service)
    missing = sorted(set(settings) - names - set(absent_in(rendered.name)))
    assert missing == [], f"{rendered.name}/{service}: settings in neither ConfigMap nor Secret"
    unknown = sorted(names - set(settings) - tracing_variables())
    assert unknown == [], f"{rendered.name}/{service}: variables no setting reads (typo?)"
    listed = sorted(names & set(absent_in(rendered.name)))
    assert listed == [], f"{rendered.name}/{service}: set, yet listed as deliberately absent"
    overlap = sorted(set(rendered.config(service)) & set(rendered.env(service)))
    assert overlap == [], f"{rendered.name}/{service}: set twice, env would hide the ConfigMap"
    env = rendered.config(service) | {
        name: SECRET_PLACEHOLDERS.get(name, "placeholder") for name in rendered.env(service)
    }
    validate_settings(service, env)


@pytest.mark.parametrize("service", SERVICES)
def test_kubernetes_secrets_come_from_secrets(rendered: Rendered, service: str) -> None:
    config = rendered.config(service)
    env = rendered.env(service)
    for name, setting in settings_of(service).items():
        if not setting.is_secret:
            continue
        assert name not in config, f"{rendered.name}/{service}: {name} in a ConfigMap"
        if name in env:
            assert "secretKeyRef" in env[name].get("valueFrom", {}), (
                f"{rendered.name}/{service}: {name} must come from a Secret"
            )
    # Everything in explicit env is a Secret reference (plain values belong in the ConfigMap).
    for name, entry in env.items():
        assert "secretKeyRef" in entry.get("valueFrom", {}), (
            f"{service}: {name} is not a Secret ref"
        )
    assert "MONGODB_URL" in env
    # A token key source: the shared secret from a Secret, or the identity provider's key set.
    assert "JWT_SECRET" in env or "JWT_JWKS_URL" in config
