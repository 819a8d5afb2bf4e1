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
