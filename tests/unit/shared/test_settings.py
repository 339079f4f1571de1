"""Settings come from the environment; a bad one stops start-up with one line naming it."""

import pytest

from hirestream.postings.app import PostingsSettings
from hirestream.shared.settings import load_settings

SECRET = "Vq3-random-4Jk9zP1mXw7Lr2Tb8Nc5Yd6Hf0Ge"


def test_defaults_and_contract_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", SECRET)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("LOG_FORMAT", "console")
    settings = load_settings(PostingsSettings)
    assert settings.port == 8001
    assert settings.mongodb_database == "postings"
    assert settings.kafka_bootstrap_servers == "k1:9092,k2:9092"
    assert settings.log_format == "console"


@pytest.mark.parametrize(
    ("name", "value"),
    [("PORT", "seventy"), ("PORT", "70000"), ("LOG_FORMAT", "xml"), ("SMTP_PORT", "-1")],
)
def test_a_malformed_setting_stops_with_its_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str, value: str
) -> None:
    monkeypatch.setenv("JWT_SECRET", SECRET)
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as stopped:
        load_settings(PostingsSettings)
    assert stopped.value.code == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line
    assert name in line
    assert value not in line or value.isalpha()  # the message names, it does not echo secrets


def test_missing_jwt_key_source_stops(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("JWT_SECRET", raising=False)
    monkeypatch.delenv("JWT_JWKS_URL", raising=False)
    with pytest.raises(SystemExit):
        load_settings(PostingsSettings)
    assert "JWT_SECRET" in capsys.readouterr().err


def test_a_short_jwt_secret_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JWT_SECRET", "short-secret")
    with pytest.raises(SystemExit):
        load_settings(PostingsSettings)
    err = capsys.readouterr().err
    assert "JWT_SECRET" in err
    assert "short-secret" not in err


@pytest.mark.parametrize(
    "placeholder",
    ["changeme-changeme-changeme-changeme", "my-dev-jwt-secret-0123456789abcdef", "x" * 40],
)
def test_a_placeholder_jwt_secret_is_refused_outside_development(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], placeholder: str
) -> None:
    monkeypatch.setenv("JWT_SECRET", placeholder)
    monkeypatch.delenv("ENVIRONMENT", raising=False)
    with pytest.raises(SystemExit):
        load_settings(PostingsSettings)
    err = capsys.readouterr().err
    assert "JWT_SECRET" in err
    assert placeholder not in err

    monkeypatch.setenv("ENVIRONMENT", "development")
    assert load_settings(PostingsSettings).environment == "development"
