"""Test helpers users can use too: a real OTLP receiver and the decoded records it collects."""

from mfotel.testing._receiver import (
    OTLPReceiver,
    ReceivedEvent,
    ReceivedLink,
    ReceivedLog,
    ReceivedPoint,
    ReceivedRequest,
    ReceivedSpan,
)

__all__ = [
    "OTLPReceiver",
    "ReceivedEvent",
    "ReceivedLink",
    "ReceivedLog",
    "ReceivedPoint",
    "ReceivedRequest",
    "ReceivedSpan",
]
