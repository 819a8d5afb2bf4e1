"""Kafka transport: the relay that publishes the notification log to a Kafka topic."""

from __future__ import annotations

from ecomcore_projections.kafka.relay import (
    DEFAULT_PARTITIONS,
    DEFAULT_TOPIC,
    POSITION_TABLE,
    KafkaUnavailable,
    Relay,
    RelayRunning,
)

__all__ = ["DEFAULT_PARTITIONS", "DEFAULT_TOPIC", "POSITION_TABLE", "KafkaUnavailable", "Relay", "RelayRunning"]

from ecomcore_projections.kafka.consumer import (
    DEFAULT_GROUP,
    KAFKA_POSITIONS_TABLE,
    KafkaProjector,
    PartitionLag,
    PartitionPosition,
)

__all__ += ["DEFAULT_GROUP", "KAFKA_POSITIONS_TABLE", "KafkaProjector", "PartitionLag", "PartitionPosition"]
