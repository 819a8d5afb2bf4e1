"""Stores pydantic events as JSON, with class versions and upcasting.

The ``eventsourcing`` mapper assumes dataclass-like events; this one asks the
pydantic model for its JSON form and validates what it reads back, so a stored
event that no longer fits its class fails loudly instead of half-loading.
"""

from __future__ import annotations

import json
from typing import Any

from eventsourcing.persistence import Mapper, MapperDeserialisationError, StoredEvent
from eventsourcing.utils import get_topic, register_topic, resolve_topic

from ecomcore.domain.aggregate import DomainEvent
from ecomcore.domain.renames import RENAMED_TOPICS

# Events stored under a class's former name or module load as the class it is now.
for _former, _current in RENAMED_TOPICS.items():
    register_topic(_former, _current)

_IDENTITY_FIELDS = {"originator_id", "originator_version"}


class PydanticMapper(Mapper):
    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        event: DomainEvent = domain_event
        state = event.model_dump(mode="json", exclude=_IDENTITY_FIELDS)
        state["class_version"] = type(event).class_version
        data = json.dumps(state, separators=(",", ":"), sort_keys=True).encode()
        if self.compressor:
            data = self.compressor.compress(data)
        if self.cipher:
            data = self.cipher.encrypt(data)
        return StoredEvent(
            originator_id=event.originator_id,
            originator_version=event.originator_version,
            topic=get_topic(type(event)),
            state=data,
        )

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        cls: type[DomainEvent] = resolve_topic(stored_event.topic)
        try:
            data = stored_event.state
            if self.cipher:
                data = self.cipher.decrypt(data)
            if self.compressor:
                data = self.compressor.decompress(data)
            state: dict[str, Any] = json.loads(data)
        except Exception as error:
            raise MapperDeserialisationError(
                f"cannot decode stored event {stored_event.topic} "
                f"{stored_event.originator_id} v{stored_event.originator_version}: {error}"
            ) from error
        upcast(cls, state)
        state["originator_id"] = stored_event.originator_id
        state["originator_version"] = stored_event.originator_version
        return cls.model_validate(state)


def upcast(cls: type[DomainEvent], state: dict[str, Any]) -> None:
    """Bring an old event's stored state up to the class's current version, in place."""
    version = state.pop("class_version", 1)
    while version < cls.class_version:
        getattr(cls, f"upcast_v{version}_v{version + 1}")(state)
        version += 1
