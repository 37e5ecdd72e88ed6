"""The collector side of mfotel: rendered configs, the slim distribution, and running it.

``render(["datadog"], profile="prod", assignments=["site=datadoghq.eu"])`` returns a collector
config as YAML text; ``build()`` builds the kit's collector with the OpenTelemetry Collector
Builder and caches it; ``validate(path)`` asks a real collector for its verdict on a config.
"""

from __future__ import annotations

from mfotel.collector._build import CollectorError, build, cached_binary, find_binary
from mfotel.collector._process import Verdict, run, validate
from mfotel.collector._render import PROFILES, RenderError, render, targets

__all__ = [
    "PROFILES",
    "CollectorError",
    "RenderError",
    "Verdict",
    "build",
    "cached_binary",
    "find_binary",
    "render",
    "run",
    "targets",
    "validate",
]
