"""Where the tests find a real Kafka broker and a real MongoDB-protocol server.

Endpoints named in the environment (`KAFKA_BOOTSTRAP_SERVERS` and `MONGODB_URL`, as `stack.sh
env` prints them for a running stack), else the project's local stack (deploy/local/stack.sh)
started on free ports in a temporary folder: the same servers on every machine, with or without
a Docker engine. Never a silent skip: if none can be had, the session fails and says why.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
STACK_SCRIPT = REPO / "deploy" / "local" / "stack.sh"


@dataclass(frozen=True)
class Servers:
    kafka_bootstrap: str
    mongodb_url: str
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    mail_dir: Path | None = None  # where the local stack's mail catcher stores messages
    origin: str = "environment"
    stack_dir: Path | None = None
    stack_env: dict[str, str] | None = None  # how to call stack.sh for this stack again
    # Kafka's client security: the protocol, and each principal's password (none: PLAINTEXT).
    kafka_protocol: str = "PLAINTEXT"
    kafka_passwords: dict[str, str] = field(default_factory=dict)

    def kafka_env(self, principal: str) -> dict[str, str]:
        """The settings a service process authenticates to Kafka with, as `principal`."""
        if not self.kafka_passwords:
            return {}
        return {
            "KAFKA_SECURITY_PROTOCOL": self.kafka_protocol,
            "KAFKA_SASL_MECHANISM": SASL_MECHANISM,
            "KAFKA_SASL_USERNAME": principal,
            "KAFKA_SASL_PASSWORD": self.kafka_passwords[principal],
        }

    def kafka_client(self, principal: str = "operator") -> dict[str, Any]:
        """aiokafka client options for `principal` (the tests themselves are `operator`)."""
        options: dict[str, Any] = {"bootstrap_servers": self.kafka_bootstrap}
        if self.kafka_passwords:
            options |= {
                "security_protocol": self.kafka_protocol,
                "sasl_mechanism": SASL_MECHANISM,
                "sasl_plain_username": principal,
                "sasl_plain_password": self.kafka_passwords[principal],
            }
        return options

    def stack(self, *args: str) -> None:
        """Run `stack.sh <args>` on this (local) stack: e.g. `start` brings back a server a
        fault test killed."""
        if self.stack_env is None:
            raise RuntimeError("these servers are not the local stack: cannot signal them")
        run_stack(self.stack_env, *args)

    def pid(self, server: str) -> int:
        """The pid of one of the local stack's servers: kafka, kafka-2, mongo, smtp."""
        if self.stack_dir is None:
            raise RuntimeError("these servers are not the local stack: cannot signal them")
        return int((self.stack_dir / f"{server}.pid").read_text().split()[0])


SASL_MECHANISM = "SCRAM-SHA-512"

# The servers each session started, by Kafka bootstrap address: helpers that are given only an
# address (or a service's environment) find the credentials to use with it here.
_STARTED: dict[str, Servers] = {}


def started(bootstrap: str) -> Servers | None:
    """The servers a session started whose Kafka `bootstrap` names, all or some of its brokers."""
    brokers = set(bootstrap.split(","))
    for address, servers in _STARTED.items():
        if brokers <= set(address.split(",")):
            return servers
    return None


def passwords_in(lines: dict[str, str]) -> dict[str, str]:
    """Each principal's Kafka password, from `KAFKA_SASL_PASSWORD_<PRINCIPAL>` lines."""
    prefix = "KAFKA_SASL_PASSWORD_"
    return {
        key.removeprefix(prefix).lower(): v for key, v in lines.items() if key.startswith(prefix)
    }


def kafka_client(bootstrap: str, principal: str = "operator") -> dict[str, Any]:
    servers = started(bootstrap)
    return servers.kafka_client(principal) if servers else {"bootstrap_servers": bootstrap}


def kafka_env(bootstrap: str, principal: str) -> dict[str, str]:
    servers = started(bootstrap)
    return servers.kafka_env(principal) if servers else {}


# Below Linux's ephemeral range (32768-60999): a port the kernel hands to some outgoing
# connection between our check and the server's bind would make the server fail to start.
_PORT_RANGE = (20000, 32000)


def free_port() -> int:
    for _ in range(200):
        port = random.randrange(*_PORT_RANGE)
        if _port_free(port):
            return port
    raise RuntimeError(f"no free port in {_PORT_RANGE}")


def consecutive_free_ports(count: int) -> list[int]:
    """`count` free ports in a row (the 3-node stack numbers its nodes' ports upwards)."""
    for _ in range(50):
        first = free_port()
        ports = list(range(first, first + count))
        if all(_port_free(port) for port in ports[1:]):
            return ports
    raise RuntimeError(f"no {count} consecutive free ports")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@contextmanager
def from_environment() -> Iterator[Servers]:
    """Servers named by the environment, in the lines `stack.sh env` prints (so
    `eval "$(deploy/local/stack.sh env)"` points the tests at a running local stack)."""
    servers = Servers(
        kafka_bootstrap=os.environ["KAFKA_BOOTSTRAP_SERVERS"],
        mongodb_url=os.environ["MONGODB_URL"],
        smtp_host=os.environ.get("SMTP_HOST", "127.0.0.1"),
        smtp_port=int(os.environ.get("SMTP_PORT", "1025")),
        kafka_protocol=os.environ.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"),
        kafka_passwords=passwords_in(dict(os.environ)),
    )
    _STARTED[servers.kafka_bootstrap] = servers
    yield servers


def run_stack(env: dict[str, str], *args: str) -> dict[str, str]:
    """Run stack.sh; returns the `KEY=value` lines it printed (the endpoints, for `start`)."""
    result = subprocess.run(
        ["bash", str(STACK_SCRIPT), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{STACK_SCRIPT} {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        )
    lines = (line.partition("=") for line in result.stdout.splitlines())
    return {key: value for key, sign, value in lines if sign and key.isupper()}


@contextmanager
def from_local_stack(stack_dir: Path, *, kafka_nodes: int = 1) -> Iterator[Servers]:
    """A local stack on free ports in `stack_dir`; `kafka_nodes=3` for a 3-node cluster."""
    kafka_ports = consecutive_free_ports(kafka_nodes * 2)  # brokers, then controllers
    env = {
        "STACK_DIR": str(stack_dir),
        "KAFKA_NODES": str(kafka_nodes),
        "KAFKA_PORT": str(kafka_ports[0]),
        "KAFKA_CONTROLLER_PORT": str(kafka_ports[kafka_nodes]),
        "MONGO_PORT": str(free_port()),
        "SMTP_PORT": str(free_port()),
    }
    endpoints = run_stack(env, "start")
    servers = Servers(
        kafka_bootstrap=endpoints["KAFKA_BOOTSTRAP_SERVERS"],
        mongodb_url=endpoints["MONGODB_URL"],
        smtp_port=int(env["SMTP_PORT"]),
        mail_dir=stack_dir / "mail",
        origin="local stack",
        stack_dir=stack_dir,
        stack_env=env,
        kafka_protocol=endpoints.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"),
        kafka_passwords=passwords_in(endpoints),
    )
    _STARTED[servers.kafka_bootstrap] = servers
    try:
        yield servers
    finally:
        _STARTED.pop(servers.kafka_bootstrap, None)
        subprocess.run(["bash", str(STACK_SCRIPT), "stop"], env={**os.environ, **env}, check=False)


@contextmanager
def real_servers(stack_dir: Path) -> Iterator[Servers]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and os.environ.get("MONGODB_URL"):
        source = from_environment()
    else:
        source = from_local_stack(stack_dir)
    with source as servers:
        yield servers
