"""Stores pydantic events as JSON, with class versions and upcasting.

The ``eventsourcing`` mapper assumes dataclass-like events; this one asks the
pydantic model for its JSON form and validates what it reads back, so a stored
event that no longer fits its class fails loudly instead of half-loading: every
stored event that cannot be read as it was written (unknown topic, undecodable or
undecryptable bytes, a ``class_version`` this code does not know, state that does not
validate) raises ``StoreCorrupted`` naming the aggregate, the version and, when the
event was read from the notification log, the notification id.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from eventsourcing.persistence import Mapper, StoredEvent
from eventsourcing.utils import get_topic, register_topic, resolve_topic
from pydantic import ValidationError

from ecomcore.domain.aggregate import DomainEvent
from ecomcore.domain.errors import StoreCorrupted
from ecomcore.domain.renames import RENAMED_TOPICS

# Events stored under a class's former name or module load as the class it is now.
for _former, _current in RENAMED_TOPICS.items():
    register_topic(_former, _current)

_IDENTITY_FIELDS = {"originator_id", "originator_version"}

#: Topics already resolved to their event class (a store uses a few dozen).
_EVENT_CLASSES: dict[str, type[DomainEvent]] = {}
_EVENT_CLASSES_LOCK = threading.Lock()


def event_class(topic: str, stored_event: StoredEvent | None = None) -> type[DomainEvent]:
    """The event class ``topic`` names; ``StoreCorrupted`` when it names none."""
    found = _EVENT_CLASSES.get(topic)
    if found is not None:
        return found
    try:
        resolved = resolve_topic(topic)
    except Exception as error:  # TopicError, or an import that fails on a mangled name
        raise corrupted(stored_event, f"unknown topic {topic!r}", topic=topic) from error
    if not (isinstance(resolved, type) and issubclass(resolved, DomainEvent)):
        raise corrupted(stored_event, f"topic {topic!r} names no event class", topic=topic)
    with _EVENT_CLASSES_LOCK:
        _EVENT_CLASSES[topic] = resolved
    return resolved


def corrupted(stored_event: StoredEvent | None, message: str, *, topic: str | None = None) -> StoreCorrupted:
    """``StoreCorrupted`` naming the stored event (and its notification id, if it has one)."""
    if stored_event is None:
        return StoreCorrupted(message, topic=topic)
    return StoreCorrupted(
        message,
        aggregate_id=stored_event.originator_id,
        version=stored_event.originator_version,
        notification_id=getattr(stored_event, "id", None),  # a Notification read from the log
        topic=topic or stored_event.topic,
    )


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
        cls = event_class(stored_event.topic, stored_event)
        try:
            data = stored_event.state
            if self.cipher:
                data = self.cipher.decrypt(data)
            if self.compressor:
                data = self.compressor.decompress(data)
            state = json.loads(data)
            if not isinstance(state, dict):
                raise TypeError(f"the stored state is a JSON {type(state).__name__}, not an object")
        except Exception as error:
            raise corrupted(stored_event, f"cannot decode stored {cls.__qualname__}: {_first_line(error)}") from error
        upcast(cls, state, stored_event)
        state["originator_id"] = stored_event.originator_id
        state["originator_version"] = stored_event.originator_version
        try:
            return cls.model_validate(state)
        except Exception as error:  # pydantic's ValidationError, or a validator's own
            raise corrupted(
                stored_event, f"stored {cls.__qualname__} does not fit its class: {_first_line(error)}"
            ) from error


def upcast(cls: type[DomainEvent], state: dict[str, Any], stored_event: StoredEvent | None = None) -> None:
    """Bring an old event's stored state up to the class's current version, in place.

    A ``class_version`` below 1 or above the class's own (written by a newer ecomcore, or
    tampered with) is refused with ``StoreCorrupted``: loading it as if current would
    misread it.
    """
    version = state.pop("class_version", 1)
    if type(version) is not int or not 1 <= version <= cls.class_version:
        raise corrupted(
            stored_event,
            f"stored {cls.__qualname__} has class_version {version!r}; "
            f"this version of ecomcore reads 1 to {cls.class_version}",
        )
    while version < cls.class_version:
        upcaster = getattr(cls, f"upcast_v{version}_v{version + 1}", None)
        if upcaster is None:
            raise corrupted(stored_event, f"{cls.__qualname__} has no upcaster from class_version {version}")
        try:
            upcaster(state)
        except Exception as error:
            raise corrupted(
                stored_event, f"cannot upcast {cls.__qualname__} from class_version {version}: {_first_line(error)}"
            ) from error
        version += 1


def _first_line(error: BaseException) -> str:
    if isinstance(error, ValidationError):
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or 'state'}: {problem['msg']}"
            for problem in error.errors(include_url=False, include_context=False, include_input=False)[:3]
        )
        return f"{error.error_count()} problem(s): {problems}"
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__
