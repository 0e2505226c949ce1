"""A stand-in Prometheus for respx: answers each query of a pull by name."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import httpx

from bot.collectors.prometheus import (
    QUERY_LABEL,
    Window,
    build_queries,
    combined,
    request_groups,
)

PROM_URL = "http://prometheus.test:9090"
AT = datetime(2026, 7, 20, 12, 0, tzinfo=UTC)
WINDOW = Window(at=AT, seconds=3600, stale_seconds=300, scrape_interval_seconds=30)


def form(request: httpx.Request) -> dict[str, str]:
    """The form fields of a POSTed query."""
    return {key: values[0] for key, values in parse_qs(request.content.decode()).items()}


class FakePrometheus:
    """Series to answer per query name; anything not added answers an empty vector."""

    def __init__(self, window: Window = WINDOW) -> None:
        self.queries = build_queries(window)
        self.names = {query: name for name, query in self.queries.items()}
        # What Steward sends: several named queries in one expression (see `combined`).
        self.groups = {combined(group): list(group) for group in request_groups(self.queries)}
        self.series: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.seen: list[httpx.Request] = []
        self.window = window

    def add(self, name: str, value: float | str, **labels: str) -> None:
        """One sample of an instant query's answer."""
        assert name in self.queries, name
        self.series[name].append({"metric": labels, "value": [AT.timestamp(), str(value)]})

    def windowed(
        self,
        name: str,
        value: float | str,
        *,
        samples: float | None = None,
        fresh: bool = True,
        **labels: str,
    ) -> None:
        """A windowed figure with its sample count and freshness."""
        full = self.window.expected_samples if samples is None else samples
        self.add(name, value, steward_stat="value", **labels)
        self.add(name, full, steward_stat="samples", **labels)
        if fresh:
            self.add(name, 10, steward_stat="recent", **labels)

    def handler(self, request: httpx.Request) -> httpx.Response:
        """Answer one `/api/v1/query` request."""
        self.seen.append(request)
        query = form(request)["query"]
        if query in self.groups:
            result = [
                {**sample, "metric": {**sample["metric"], QUERY_LABEL: name}}
                for name in self.groups[query]
                for sample in self.series[name]
            ]
        else:
            result = self.series[self.names[query]]
        body = {"status": "success", "data": {"resultType": "vector", "result": result}}
        return httpx.Response(200, content=json.dumps(body).encode())


def small_cluster(prom: FakePrometheus) -> FakePrometheus:
    """An H100 node serving Mistral-7B to one replica, and one pending 4-GPU pod."""
    prom.add("node_gpu_allocatable", 1, node="gpu-a", resource="nvidia_com_gpu")
    prom.add(
        "node_gpu_product", 1, node="gpu-a", label_nvidia_com_gpu_product="NVIDIA-H100-80GB-HBM3"
    )
    pod = {"namespace": "serve", "pod": "mistral-5d9c-x1"}
    prom.add("pod_phase", 1, phase="Running", **pod)
    prom.add("pod_owner", 1, owner_kind="ReplicaSet", owner_name="mistral-5d9c", **pod)
    prom.add(
        "replicaset_owner",
        1,
        namespace="serve",
        replicaset="mistral-5d9c",
        owner_kind="Deployment",
        owner_name="mistral",
    )
    prom.add("deployment_replicas", 1, namespace="serve", deployment="mistral")
    prom.add("pod_gpu_requests", 1, node="gpu-a", **pod)
    prom.windowed(
        "gpu_util", 20, Hostname="gpu-a", modelName="NVIDIA H100 80GB HBM3", gpu="0", **pod
    )
    prom.windowed("cpu_usage", 1.5, **pod)
    prom.add("cpu_limits", 4, **pod)
    model = {"model_name": "mistralai/Mistral-7B-Instruct-v0.3", **pod}
    prom.windowed("vllm_running", 2, **model)
    prom.windowed("vllm_waiting", 0, **model)
    prom.windowed("vllm_kv_usage", 0.05, **model)
    prom.windowed("vllm_generation_rate", 40, **model)
    prom.add("vllm_e2e_p99", 1.25, **model)
    prom.add("vllm_itl_p99", 0.04, **model)
    prom.add("vllm_cache_config", 1, gpu_memory_utilization="0.9", cache_dtype="auto", **pod)
    prom.add("vllm_model_config", 1, dtype="torch.bfloat16", max_model_len="8192", **model)
    pending = {"namespace": "batch", "pod": "trainer-0"}
    prom.add("pod_phase", 1, phase="Pending", **pending)
    prom.add("pod_gpu_requests", 4, **pending)
    prom.add("pod_age_seconds", 2700, **pending)
    return prom
