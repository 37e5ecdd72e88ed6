"""Test helpers users can use too: a real OTLP receiver, a real collector process."""

from mfotel.testing._collector import CollectorProcess, free_port
from mfotel.testing._datadog import DatadogIntake
from mfotel.testing._receiver import (
    OTLPReceiver,
    ReceivedEvent,
    ReceivedLink,
    ReceivedLog,
    ReceivedPoint,
    ReceivedRequest,
    ReceivedSpan,
)
from mfotel.testing._sigv4 import SigV4Verifier

__all__ = [
    "CollectorProcess",
    "DatadogIntake",
    "OTLPReceiver",
    "ReceivedEvent",
    "ReceivedLink",
    "ReceivedLog",
    "ReceivedPoint",
    "ReceivedRequest",
    "ReceivedSpan",
    "SigV4Verifier",
    "free_port",
]
