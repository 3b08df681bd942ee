"""The pipeline's counts in Prometheus format, when ``prometheus_client`` is installed.

The collector registers itself with the default registry on import, so an app that
already exposes ``/metrics`` gets ``langchain_label_studio_*`` series with no extra code;
the middleware also serves ``{prefix}/metrics`` when ``health=True``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

_PREFIX = "langchain_label_studio"
_COUNTERS = {
    "captured": "Captures handed to the pipeline",
    "delivered": "Records Label Studio confirmed",
    "updated": "Session task updates",
    "retried": "Records put back for another attempt",
    "dead_lettered": "Records Label Studio refused for good",
    "dropped": "Captures dropped (buffer or outbox full)",
}


class PipelineCollector:
    """Collects the health of every live pipeline of this process."""

    def collect(self) -> Iterator[Any]:
        from .pipeline import _live

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
        for pipeline in list(_live):
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


REGISTRY.register(PipelineCollector())


def metrics_text() -> bytes:
    """Everything in the default registry, in Prometheus text format."""
    return generate_latest(REGISTRY)
