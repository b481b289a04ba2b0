"""The acceptance batch every step of the guide is fed, and the stored output it must give."""

from __future__ import annotations

import copy
from typing import Any

from migration_guide.examples import domain

PROJECT_ID = 42

EVENTS: list[dict[str, Any]] = [
    {"event_id": "ev-python", "platform": "python", "message": " KeyError: 'user' ", "received": 1.0},
    {"event_id": "ev-native", "platform": "native", "message": "SIGSEGV", "received": 2.0,
     "frames": [{"addr": "0x1f"}, {"addr": "0x2a"}]},
    # The symbolicator is down for this event's first two calls: retried, then fine.
    {"event_id": "ev-flaky", "platform": "cocoa", "message": "EXC_BAD_ACCESS", "received": 3.0,
     "frames": [{"addr": "0x10"}], "flaky_symbolicator": 2},
    {"event_id": "ev-js", "platform": "javascript", "message": "TypeError: x is undefined", "received": 4.0,
     "frames": [{"addr": "0x99"}]},
]
# The same event delivered twice (consumers redeliver): stored once.
DUPLICATE = copy.deepcopy(EVENTS[0])
# An event whose payload is gone from the processing store before preprocessing: dropped.
MISSING_ID = "ev-missing"


def expected_output() -> dict[str, dict[str, Any]]:
    """What the events table must hold afterwards, computed from the domain logic itself."""
    out = {}
    for event in EVENTS:
        data = domain.normalize(event, PROJECT_ID)
        if domain.needs_symbolication(data):
            frames = [{**f, "function": f"fn_{f['addr']}"} for f in data.get("frames", [])]
            data = {**data, "frames": frames, "symbolicated": True}
        out[event["event_id"]] = domain.enrich(data)
    return out
