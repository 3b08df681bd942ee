"""The pipeline's counts in Prometheus format, when ``prometheus_client`` is installed.

The middleware, ``capture()`` and the handler register the collector with the default
registry when they are made (:func:`register`), so an app that already exposes ``/metrics``
gets ``langchain_label_studio_*`` series with no extra code; the middleware also serves
``{prefix}/metrics`` when ``health=True``. Importing this module registers nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from .pipeline import live_pipelines

_PREFIX = "langchain_label_studio"
_COUNTERS = {
    "captured": "Captures handed to the pipeline",
    "committed": "Captures written to the outbox (or settled there: dropped, quarantined)",
    "delivered": "Records Label Studio confirmed",
    "updated": "Session task updates",
    "retried": "Records put back for another attempt",
    "dead_lettered": "Records Label Studio refused for good",
    "dropped": "Captures dropped (buffer or outbox full)",
}


class PipelineCollector:
    """Collects the health of every live pipeline of this process."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        gauges = {
            "pending": GaugeMetricFamily(f"{_PREFIX}_pending", "Records waiting for delivery", labels=["url"]),
            "oldest_pending_s": GaugeMetricFamily(
                f"{_PREFIX}_oldest_pending_seconds", "Age of the oldest waiting record", labels=["url"]
            ),
            "dead_letters": GaugeMetricFamily(f"{_PREFIX}_dead_letters", "Records in the dead letters", labels=["url"]),
        }
        counters = {
            name: CounterMetricFamily(f"{_PREFIX}_{name}", help_text, labels=["url"])
            for name, help_text in _COUNTERS.items()
        }
        skipped = CounterMetricFamily(
            f"{_PREFIX}_skipped", "Captures not recorded, by reason", labels=["url", "reason"]
        )
        redactions = CounterMetricFamily(f"{_PREFIX}_redactions", "Redacted values, by rule", labels=["url", "rule"])
        for pipeline in live_pipelines():
            health = pipeline.health()
            url = str(health["label_studio_url"])
            for name, family in gauges.items():
                family.add_metric([url], float(health[name] or 0))
            for name, counter in counters.items():
                counter.add_metric([url], float(health[name]))
            for reason, count in health["skipped"].items():
                skipped.add_metric([url, reason], float(count))
            for rule, count in health["redactions"].items():
                redactions.add_metric([url, rule], float(count))
        yield from gauges.values()
        yield from counters.values()
        yield skipped
        yield redactions


_registered = False
_lock = threading.Lock()


def register() -> bool:
    """Add the collector to the default registry, once; False without ``prometheus_client``."""
    global _registered
    try:
        from prometheus_client import REGISTRY
    except ImportError:
        return False
    with _lock:
        if not _registered:
            REGISTRY.register(PipelineCollector())
            _registered = True
    return True


def metrics_text() -> bytes:
    """Everything in the default registry, in Prometheus text format (ImportError without it)."""
    from prometheus_client import REGISTRY, generate_latest

    register()
    return bytes(generate_latest(REGISTRY))
