"""The PromQL side of a pull: the window, every named query, and how they are sent.

`build_queries` names each query of a pull; `request_groups` and `combined`
pack several into one expression per request, and `split` takes the answer
apart again by the `steward_query` label. A `windowed` figure answers three
ways at once (value, sample count, freshness), told apart by `steward_stat`.
Nothing here performs I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

STAT_LABEL = "steward_stat"  # tells apart the three answers of a `windowed` query
QUERY_LABEL = "steward_query"  # tells apart the answers of queries sent together
QUERIES_PER_REQUEST = 5  # several round trips per pull keep Prometheus evaluating in parallel


# The shape of an answer lives with the queries, not the HTTP client: `split`
# builds it and the mapping reads it, and neither should depend on the client.
@dataclass(frozen=True)
class Series:
    """One sample of an instant vector: its labels and a finite value."""

    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class Window:
    """The time and range every query is evaluated over."""

    at: datetime
    seconds: int
    stale_seconds: float
    scrape_interval_seconds: float

    @property
    def range(self) -> str:
        """The PromQL range of the window, e.g. `3600s`."""
        return f"{self.seconds}s"

    @property
    def recent(self) -> str:
        """The PromQL range within which a series must have a sample to be fresh."""
        return f"{max(1, round(self.stale_seconds))}s"

    @property
    def expected_samples(self) -> float:
        """How many samples a fully covered series holds over the window."""
        return self.seconds / self.scrape_interval_seconds


def _or(parts: Iterable[str]) -> str:
    return " or ".join(parts)


def windowed(function: str, metrics: Sequence[str], window: Window, by: str | None = None) -> str:
    """One query answering a windowed figure, its sample count and its freshness.

    `metrics` lists the names of one series across renames, newest first; `or`
    keeps the newest where both exist. The three answers are told apart by a
    `steward_stat` label so one round trip serves them all.
    """

    def branch(fn: str, rng: str, agg: str) -> str:
        inner = _or(f"{fn}({metric}[{rng}])" for metric in metrics)
        return f"{agg} by ({by}) ({inner})" if by else inner

    value_agg = "sum" if function == "rate" else "avg"
    parts = [
        ("value", branch(function, window.range, value_agg)),
        ("samples", branch("count_over_time", window.range, "min")),
        ("recent", branch("count_over_time", window.recent, "min")),
    ]
    return _or(_tagged(name, expr, STAT_LABEL) for name, expr in parts)


def _tagged(name: str, expr: str, label: str) -> str:
    return f'label_replace({expr}, "{label}", "{name}", "", "")'


def request_groups(queries: Mapping[str, str]) -> list[dict[str, str]]:
    """The named queries of a pull, split into the groups sent one request each."""
    names = list(queries)
    return [
        {name: queries[name] for name in names[start : start + QUERIES_PER_REQUEST]}
        for start in range(0, len(names), QUERIES_PER_REQUEST)
    ]


def combined(group: Mapping[str, str]) -> str:
    """One PromQL expression answering every query of `group`, each answer labelled.

    Each answer carries `steward_query="<name>"`, so no two answers share a
    label set and `or` keeps them all; `split` takes them apart again.
    """
    return _or(_tagged(name, expr, QUERY_LABEL) for name, expr in group.items())


def split(group: Mapping[str, str], answer: Iterable[Series]) -> dict[str, list[Series]]:
    """The answer of a `combined` query, back to its queries by name."""
    out: dict[str, list[Series]] = {name: [] for name in group}
    for series in answer:
        labels = dict(series.labels)
        name = labels.pop(QUERY_LABEL, None)
        if name in out:
            out[name].append(Series(labels=labels, value=series.value))
    return out


def p99(metrics: Sequence[str], window: Window) -> str:
    """The per-pod p99 of a histogram (renamed metrics tried newest first)."""
    rates = _or(f"rate({metric}_bucket[{window.range}])" for metric in metrics)
    return f"histogram_quantile(0.99, sum by (le, namespace, pod, model_name) ({rates}))"


def build_queries(window: Window) -> dict[str, str]:
    """Every query of one pull, by name."""
    w = window.range
    return {
        "pod_owner": 'kube_pod_owner{owner_kind="ReplicaSet"}',
        "replicaset_owner": 'kube_replicaset_owner{owner_kind="Deployment"}',
        "pod_gpu_requests": (
            "sum by (namespace, pod, node) "
            '(kube_pod_container_resource_requests{resource="nvidia_com_gpu"})'
        ),
        "pod_phase": 'kube_pod_status_phase{phase=~"Pending|Running"} == 1',
        "pod_age_seconds": "time() - kube_pod_created",
        "deployment_replicas": "kube_deployment_spec_replicas",
        "node_gpu_allocatable": 'kube_node_status_allocatable{resource="nvidia_com_gpu"}',
        "node_gpu_product": 'kube_node_labels{label_nvidia_com_gpu_product!=""}',
        "gpu_util": windowed("avg_over_time", ["DCGM_FI_DEV_GPU_UTIL"], window),
        "cpu_usage": windowed(
            "rate",
            ['container_cpu_usage_seconds_total{container!="",container!="POD"}'],
            window,
            by="namespace, pod",
        ),
        "cpu_limits": (
            'sum by (namespace, pod) (kube_pod_container_resource_limits{resource="cpu"})'
        ),
        "vllm_running": windowed("avg_over_time", ["vllm:num_requests_running"], window),
        "vllm_waiting": windowed("avg_over_time", ["vllm:num_requests_waiting"], window),
        "vllm_kv_usage": windowed(
            "avg_over_time", ["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"], window
        ),
        "vllm_generation_rate": windowed("rate", ["vllm:generation_tokens_total"], window),
        "vllm_e2e_p99": p99(["vllm:e2e_request_latency_seconds"], window),
        "vllm_itl_p99": p99(
            ["vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"], window
        ),
        "vllm_cache_config": f"last_over_time(vllm:cache_config_info[{w}])",
        "vllm_model_config": f"last_over_time(vllm:model_config_info[{w}])",
    }
