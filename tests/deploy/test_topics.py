"""Every topic the code uses exists wherever the system is deployed, and nothing else does.

The required set is derived from the code (tests/deploy/support.py): each service's
ServiceClients' `published` and `consumed` event types, `<topic>.dlq` for each consumed one,
and the event catalog. Kubernetes declares topics as Strimzi KafkaTopic resources; compose
creates them in its one-shot `kafka-init` container from the TOPICS list.
"""

from __future__ import annotations

from tests.deploy.support import (
    Document,
    Rendered,
    personal_data_topics,
    required_topics,
    service_names,
    topics_of,
)

PARTITIONS = 3


def topic_name(resource: Document) -> str:
    name: str = resource["spec"].get("topicName") or resource["metadata"]["name"]
    return name


def test_the_code_declares_topics_and_dead_letters() -> None:
    # Guards the derivation itself: an import that found nothing would pass everything below.
    every = required_topics()
    assert any(topic.endswith(".dlq") for topic in every)
    for service in service_names():
        topics = topics_of(service)
        assert topics.published or topics.consumed, f"{service} declares no topic"
        assert {f"{topic}.dlq" for topic in topics.consumed} == topics.dead_letters


def test_every_topic_has_a_kafka_topic_resource(rendered: Rendered) -> None:
    declared = [topic_name(resource) for resource in rendered.of_kind("KafkaTopic")]
    assert len(declared) == len(set(declared)), f"{rendered.name}: a topic is declared twice"
    required = required_topics()
    assert sorted(required - set(declared)) == [], f"{rendered.name}: KafkaTopic missing"
    assert sorted(set(declared) - required) == [], f"{rendered.name}: topic no code uses"


def test_kafka_topics_are_durable_and_belong_to_the_cluster(rendered: Rendered) -> None:
    for resource in rendered.of_kind("KafkaTopic"):
        name = topic_name(resource)
        assert resource["apiVersion"] == "kafka.strimzi.io/v1beta2", name
        assert resource["metadata"]["labels"]["strimzi.io/cluster"] == "hirestream", name
        spec = resource["spec"]
        # Partitions bound consumer parallelism; every overlay keeps the same count.
        assert spec["partitions"] == PARTITIONS, name
        replicas = spec["replicas"]
        min_insync = spec["config"]["min.insync.replicas"]
        if rendered.name == "dev":
            # A one-broker development cluster (overlays/dev says so).
            assert (replicas, min_insync) == (1, 1), name
        else:
            assert (replicas, min_insync) == (3, 2), name


def test_posting_topics_keep_their_history_for_the_read_model_rebuild(
    rendered: Rendered,
) -> None:
    # rebuild_read_model replays posting.* from offset 0: they must not expire.
    for resource in rendered.of_kind("KafkaTopic"):
        name = topic_name(resource)
        if name.startswith("posting.") and not name.endswith(".dlq"):
            config = resource["spec"]["config"]
            kept = str(config.get("retention.ms")) == "-1" or "compact" in str(
                config.get("cleanup.policy", "")
            )
            assert kept, f"{name} would expire records the rebuild needs"


def test_personal_data_expires_as_the_services_say(rendered: Rendered) -> None:
    # The services create such topics with KAFKA_PERSONAL_DATA_RETENTION_MS; the managed
    # topics must say the same, or an erased candidate's name outlives the promise.
    personal = personal_data_topics()
    assert personal, "the code marks some event type as carrying personal data"
    (retention,) = {
        rendered.config(service)["KAFKA_PERSONAL_DATA_RETENTION_MS"] for service in service_names()
    }
    for resource in rendered.of_kind("KafkaTopic"):
        if topic_name(resource) in personal:
            assert str(resource["spec"]["config"].get("retention.ms")) == retention, (
                f"{topic_name(resource)}: retention.ms must be {retention}"
            )


def test_compose_creates_every_topic(compose: Document) -> None:
    init = compose["services"]["kafka-init"]
    declared = str(init["environment"]["TOPICS"]).split()
    assert len(declared) == len(set(declared)), "kafka-init: a topic is listed twice"
    required = required_topics()
    assert sorted(required - set(declared)) == [], "kafka-init: topic missing"
    assert sorted(set(declared) - required) == [], "kafka-init: topic no code uses"
    script = " ".join(init["command"])
    assert "kafka-topics.sh" in script
    assert "--create --if-not-exists" in script
    assert f"--partitions {PARTITIONS}" in script


def test_compose_bounds_personal_data_like_the_services(compose: Document) -> None:
    init = compose["services"]["kafka-init"]["environment"]
    assert set(str(init["PERSONAL_DATA_TOPICS"]).split()) == personal_data_topics()
    for service in service_names():
        env = compose["services"][service]["environment"]
        assert str(init["PERSONAL_DATA_RETENTION_MS"]) == str(
            env["KAFKA_PERSONAL_DATA_RETENTION_MS"]
        )
    assert "retention.ms=$$PERSONAL_DATA_RETENTION_MS" in " ".join(
        compose["services"]["kafka-init"]["command"]
    )
