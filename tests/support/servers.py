"""Where the tests find a real Kafka broker and a real MongoDB-protocol server.

In the order DESIGN.md gives: endpoints named in the environment (`KAFKA_BOOTSTRAP_SERVERS` and
`MONGODB_URL`), else containers when a Docker engine answers, else the project's local stack
(deploy/local/stack.sh) started on free ports in a temporary folder. Never a silent skip: if
none can be had, the session fails and says why.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def docker_engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return (
            subprocess.run(
                ["docker", "info"], capture_output=True, timeout=10, check=False
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


@contextmanager
def from_environment() -> Iterator[Servers]:
    yield Servers(
        kafka_bootstrap=os.environ["KAFKA_BOOTSTRAP_SERVERS"],
        mongodb_url=os.environ["MONGODB_URL"],
        smtp_host=os.environ.get("SMTP_HOST", "127.0.0.1"),
        smtp_port=int(os.environ.get("SMTP_PORT", "1025")),
    )


@contextmanager
def from_containers() -> Iterator[Servers]:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.mongodb import MongoDbContainer

    with (
        KafkaContainer("apache/kafka:4.1.1").with_kraft() as kafka,
        MongoDbContainer("mongo:8.0") as mongo,
    ):
        yield Servers(
            kafka_bootstrap=kafka.get_bootstrap_server(),
            mongodb_url=mongo.get_connection_url(),
            origin="testcontainers",
        )


@contextmanager
def from_local_stack(stack_dir: Path) -> Iterator[Servers]:
    ports = {
        "KAFKA_PORT": free_port(),
        "KAFKA_CONTROLLER_PORT": free_port(),
        "MONGO_PORT": free_port(),
        "SMTP_PORT": free_port(),
    }
    env = {**os.environ, "STACK_DIR": str(stack_dir), **{k: str(v) for k, v in ports.items()}}
    started = subprocess.run(
        ["bash", str(STACK_SCRIPT), "start"], env=env, capture_output=True, text=True, check=False
    )
    if started.returncode != 0:
        raise RuntimeError(
            f"the local stack did not start ({STACK_SCRIPT} start):\n"
            f"{started.stdout}\n{started.stderr}"
        )
    try:
        yield Servers(
            kafka_bootstrap=f"127.0.0.1:{ports['KAFKA_PORT']}",
            mongodb_url=f"mongodb://127.0.0.1:{ports['MONGO_PORT']}",
            smtp_port=ports["SMTP_PORT"],
            mail_dir=stack_dir / "mail",
            origin="local stack",
            stack_dir=stack_dir,
        )
    finally:
        subprocess.run(["bash", str(STACK_SCRIPT), "stop"], env=env, check=False)


@contextmanager
def real_servers(stack_dir: Path) -> Iterator[Servers]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and os.environ.get("MONGODB_URL"):
        source = from_environment()
    elif docker_engine_answers():
        source = from_containers()
    else:
        source = from_local_stack(stack_dir)
    with source as servers:
        yield servers
