"""Trace and span ids derived from a run's identity.

Every process of a run, and every later tool (``mfotel backfill``), names the run's trace and
a task attempt's span without being told: the ids are hashes of the flow name, the run id and
the attempt's pathspec. A ``TRACEPARENT`` at launch puts the run inside that trace instead.
"""

from __future__ import annotations

import hashlib

from mfotel.traces._propagation import SpanContext


def root_context(flow_name: str, run_id: str, parent: SpanContext | None = None) -> SpanContext:
    """The run's root span context: derived from its identity, inside ``parent``'s trace."""
    digest = hashlib.sha256(f"mfotel\0{flow_name}\0{run_id}".encode()).digest()
    if parent is not None:
        return SpanContext(parent.trace_id, digest[16:24], parent.sampled, parent.trace_state)
    return SpanContext(digest[:16], digest[16:24])


def attempt_span_id(trace_id: bytes, pathspec: str, attempt: int) -> bytes:
    """The span id of a task attempt (``Flow/run/step/task``, retry number) in ``trace_id``."""
    digest = hashlib.sha256(f"mfotel\0{trace_id.hex()}\0{pathspec}\0{attempt}".encode()).digest()
    return digest[:8] if any(digest[:8]) else digest[8:16]
