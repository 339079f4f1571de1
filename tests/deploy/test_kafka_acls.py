"""Kafka principals in Kubernetes: a Strimzi KafkaUser per service whose ACLs are exactly the
grants of deploy/local/kafka/acls.tsv for that principal (the one table the local stack and
compose apply too), an operator user for people's tools, and each Deployment logging in as its
own user with the password from the Secret Strimzi makes for it.

The table is parsed here as stack.sh reads it: TAB-separated principal, resource, pattern,
name and comma-separated operations, `#` comments and blank lines skipped. Strimzi spells two
things differently: the pattern `prefixed` is `prefix`, and the cluster resource has no name
(Kafka calls it `kafka-cluster`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.support import (
    ROOT,
    Document,
    Rendered,
    build_overlay,
    service_names,
    topics_of,
)

ACL_TABLE = ROOT / "deploy" / "local" / "kafka" / "acls.tsv"
DEPLOYMENT_DOC = ROOT / "docs" / "deployment.md"
SERVICES = service_names()
OPERATOR = "operator"
CLUSTER_CA_SECRET = "hirestream-cluster-ca-cert"  # Strimzi's <cluster>-cluster-ca-cert

# (resource type, pattern, name, operation): one ACL, as AclCommand and the authorizer see it.
Grant = tuple[str, str, str, str]


def table_grants(path: Path = ACL_TABLE) -> dict[str, set[Grant]]:
    grants: dict[str, set[Grant]] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split("\t")
        assert len(fields) == 5, f"{path}:{number}: five TAB-separated fields expected"
        principal, resource, pattern, name, operations = fields
        for operation in operations.split(","):
            grants.setdefault(principal, set()).add((resource, pattern, name, operation))
    return grants


def user_grants(user: Document) -> set[Grant]:
    authorization = user["spec"].get("authorization")
    if authorization is None:
        return set()
    assert authorization["type"] == "simple", user["metadata"]["name"]
    grants: set[Grant] = set()
    for acl in authorization["acls"]:
        assert acl.get("type", "allow") == "allow", "grants only: whatever is not granted is denied"
        assert acl.get("host", "*") == "*"
        resource = acl["resource"]
        kind = resource["type"]
        if kind == "cluster":
            assert "name" not in resource
            name, pattern = "kafka-cluster", "literal"
        else:
            name = resource["name"]
            pattern = {"literal": "literal", "prefix": "prefixed"}[resource["patternType"]]
        assert "operation" not in acl, "`operations` (a list); `operation` is deprecated"
        for operation in acl["operations"]:
            grants.add((kind, pattern, name, operation))
    return grants


def kafka_users(rendered: Rendered) -> dict[str, Document]:
    return {user["metadata"]["name"]: user for user in rendered.of_kind("KafkaUser")}


def test_the_table_is_read() -> None:
    # Guards the parser: a table read as empty would make every comparison below vacuous.
    grants = table_grants()
    assert set(grants) == set(SERVICES)
    assert all(len(service_grants) > 5 for service_grants in grants.values())


def test_a_kafka_user_per_principal_and_operator(rendered: Rendered) -> None:
    users = kafka_users(rendered)
    assert set(users) == set(table_grants()) | {OPERATOR}
    for name, user in users.items():
        assert user["apiVersion"] == "kafka.strimzi.io/v1beta2", name
        assert user["metadata"]["labels"]["strimzi.io/cluster"] == "hirestream", name
        assert user["spec"]["authentication"] == {"type": "scram-sha-512"}, name


@pytest.mark.parametrize("principal", sorted(table_grants()))
def test_kafka_user_acls_are_the_table(rendered: Rendered, principal: str) -> None:
    expected = table_grants()[principal]
    actual = user_grants(kafka_users(rendered)[principal])
    assert sorted(expected - actual) == [], f"{principal}: in acls.tsv, not in its KafkaUser"
    assert sorted(actual - expected) == [], f"{principal}: in its KafkaUser, not in acls.tsv"


def test_a_changed_table_is_noticed(tmp_path: Path) -> None:
    # The comparison above fails when one operation of one line changes.
    changed = tmp_path / "acls.tsv"
    changed.write_text(
        ACL_TABLE.read_text().replace("\tposting.created\tWrite,", "\tposting.created\tRead,", 1)
    )
    user = kafka_users(build_overlay("dev"))["postings"]
    assert table_grants(changed)["postings"] != user_grants(user)


def test_operator_is_a_super_user_not_a_holder_of_acls(rendered: Rendered) -> None:
    # Super users are configured on the Kafka resource (spec.kafka.authorization.superUsers):
    # the operator's user carries no ACLs, and the deployment guide says to list it there.
    operator = kafka_users(rendered)[OPERATOR]
    assert "authorization" not in operator["spec"]
    doc = DEPLOYMENT_DOC.read_text()
    assert "superUsers" in doc
    assert f"- {OPERATOR}" in doc


@pytest.mark.parametrize("service", SERVICES)
def test_the_table_grants_what_the_code_uses(service: str) -> None:
    # Write exactly the topics it publishes and the dead-letter topics of what it consumes,
    # Read exactly what it consumes; its groups; IdempotentWrite for its producer.
    topics = topics_of(service)
    grants = table_grants()[service]
    written = {name for kind, _, name, op in grants if kind == "topic" and op == "Write"}
    read = {name for kind, _, name, op in grants if kind == "topic" and op == "Read"}
    assert written == topics.published | topics.dead_letters
    assert read == topics.consumed
    assert ("cluster", "literal", "kafka-cluster", "IdempotentWrite") in grants
    groups = {(pattern, name) for kind, pattern, name, _ in grants if kind == "group"}
    assert all(pattern == "prefixed" and name.startswith(service) for pattern, name in groups)


@pytest.mark.parametrize("service", SERVICES)
def test_each_deployment_logs_in_as_its_kafka_user(rendered: Rendered, service: str) -> None:
    config = rendered.config(service)
    assert config["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert config["KAFKA_SASL_USERNAME"] == service
    assert service in kafka_users(rendered)
    # The Secret Strimzi's User Operator makes for the KafkaUser: its name, key `password`.
    reference = rendered.env(service)["KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert reference == {"name": service, "key": "password"}


@pytest.mark.parametrize("service", SERVICES)
def test_tls_to_kafka_in_production_only(rendered: Rendered, service: str) -> None:
    config = rendered.config(service)
    if rendered.name != "prod":
        assert config["KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
        assert "KAFKA_SSL_CAFILE" not in config
        return
    assert config["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    # The CA file is Strimzi's cluster CA, mounted from the Secret it keeps it in.
    cafile = Path(config["KAFKA_SSL_CAFILE"])
    pod = rendered.deployment(service)["spec"]["template"]["spec"]
    mounts = {m["name"]: m for m in rendered.container(service)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"] if "secret" in v}
    (name,) = [n for n in volumes if Path(mounts[n]["mountPath"]) == cafile.parent]
    assert mounts[name].get("readOnly") is True
    secret = volumes[name]["secret"]
    assert secret["secretName"] == CLUSTER_CA_SECRET
    assert {item["key"]: item["path"] for item in secret["items"]} == {"ca.crt": cafile.name}
