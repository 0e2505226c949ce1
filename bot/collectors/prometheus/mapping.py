"""Answers to facts: the answers of `build_queries`, by name, into facts per workload.

Pure: takes the answers and the window they were evaluated over, returns facts
with their confidence and provenance (the PromQL that produced each one).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from statistics import fmean
from typing import Any, Literal

from bot.collectors.prometheus.queries import STAT_LABEL, Series, Window

Confidence = Literal["high", "medium", "low"]
NODE_NAMESPACE = "gpu-pool"


@dataclass(frozen=True)
class Stat:
    """A windowed figure of one series with how well the window was covered."""

    labels: Mapping[str, str]
    value: float
    samples: float
    fresh: bool


def stats(series: Iterable[Series]) -> list[Stat]:
    """Fold the three answers of a `windowed` query back into one Stat per series."""
    parts: dict[tuple[tuple[str, str], ...], dict[str, float]] = defaultdict(dict)
    for item in series:
        labels = {k: v for k, v in item.labels.items() if k != STAT_LABEL}
        parts[tuple(sorted(labels.items()))][item.labels.get(STAT_LABEL, "value")] = item.value
    return [
        Stat(
            labels=dict(key),
            value=got["value"],
            samples=got.get("samples", 0.0),
            fresh="recent" in got,
        )
        for key, got in parts.items()
        if "value" in got
    ]


# --- labels --------------------------------------------------------------------------------


def pod_key(labels: Mapping[str, str]) -> tuple[str, str] | None:
    """(namespace, pod) of a series; exporters' own labels win over the scrape target's."""
    namespace = labels.get("exported_namespace") or labels.get("namespace")
    pod = labels.get("exported_pod") or labels.get("pod")
    return (namespace, pod) if namespace and pod else None


def node_of(labels: Mapping[str, str]) -> str | None:
    """The node of a DCGM series: `Hostname`, renamed `hostname` on newer exporters."""
    return labels.get("Hostname") or labels.get("hostname") or None


def node_id(node: str) -> str:
    """The workloadId of a GPU node."""
    return f"ns/{NODE_NAMESPACE}/node/{node}"


# --- facts ---------------------------------------------------------------------------------


@dataclass
class FactSink:
    """Collects facts per workload, each with its provenance."""

    at: datetime
    queries: Mapping[str, str]
    workloads: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def put(
        self,
        workload_id: str,
        key: str,
        value: Any,
        confidence: Confidence,
        query: str,
        units: str | None = None,
    ) -> None:
        """Record one fact; numbers are rounded for people, whole counts kept whole."""
        if isinstance(value, float):
            if not math.isfinite(value):
                return
            value = int(value) if value.is_integer() else round(value, 3)
        fact: dict[str, Any] = {
            "value": value,
            "dataConfidence": confidence,
            "source": {"type": "prometheus", "method": "promql", "ref": self.queries[query]},
            "observedAt": self.at.isoformat().replace("+00:00", "Z"),
        }
        if units is not None:
            fact["units"] = units
        self.workloads.setdefault(workload_id, {})[key] = fact


def coverage(found: Sequence[Stat], expected: int, window: Window) -> Confidence:
    """high: every expected series is fresh and covers the window; low: all stale."""
    fresh = [item for item in found if item.fresh]
    if not fresh:
        return "low"
    if len(fresh) < max(expected, len(found)):
        return "medium"
    if any(item.samples < window.expected_samples / 2 for item in found):
        return "medium"
    return "high"


def _mode(values: Iterable[str]) -> str | None:
    counts: dict[str, int] = defaultdict(int)
    for value in values:
        counts[value] += 1
    return max(counts, key=lambda v: (counts[v], v)) if counts else None


@dataclass
class _Deployment:
    namespace: str
    name: str
    pods: set[tuple[str, str]] = field(default_factory=set)

    @property
    def workload_id(self) -> str:
        return f"ns/{self.namespace}/deployment/{self.name}"


def map_facts(
    results: Mapping[str, list[Series]], queries: Mapping[str, str], window: Window
) -> dict[str, dict[str, dict[str, Any]]]:
    """Map the answers of `build_queries` into facts per workload."""
    sink = FactSink(window.at, queries)
    phase: dict[tuple[str, str], str] = {}
    for item in results["pod_phase"]:
        key = pod_key(item.labels)
        if key:
            phase[key] = item.labels.get("phase", "")
    gpu_requests: dict[tuple[str, str], tuple[float, str | None]] = {}
    for item in results["pod_gpu_requests"]:
        key = pod_key(item.labels)
        if key and item.value > 0:
            gpu_requests[key] = (item.value, item.labels.get("node") or None)

    _map_nodes(sink, results, phase, gpu_requests, window)
    _map_pending(sink, results, phase, gpu_requests)
    _map_deployments(sink, results, phase, gpu_requests, window)
    return sink.workloads


def _map_nodes(
    sink: FactSink,
    results: Mapping[str, list[Series]],
    phase: Mapping[tuple[str, str], str],
    gpu_requests: Mapping[tuple[str, str], tuple[float, str | None]],
    window: Window,
) -> None:
    allocatable = {
        item.labels["node"]: item.value
        for item in results["node_gpu_allocatable"]
        if item.labels.get("node") and item.value > 0
    }
    products = {
        item.labels["node"]: item.labels["label_nvidia_com_gpu_product"]
        for item in results["node_gpu_product"]
        if item.labels.get("node") and item.labels.get("label_nvidia_com_gpu_product")
    }
    util_by_node: dict[str, list[Stat]] = defaultdict(list)
    model_by_node: dict[str, list[str]] = defaultdict(list)
    for stat in stats(results["gpu_util"]):
        node = node_of(stat.labels)
        if node:
            util_by_node[node].append(stat)
            if stat.labels.get("modelName"):
                model_by_node[node].append(stat.labels["modelName"])
    allocated: dict[str, float] = defaultdict(float)
    for key, (count, node) in gpu_requests.items():
        # Only bound pods that have not finished hold their GPUs.
        if node and phase.get(key) in ("Running", "Pending"):
            allocated[node] += count
    phases_known = bool(phase)
    for node in sorted(set(allocatable) | set(util_by_node)):
        wid = node_id(node)
        gpu_type = products.get(node) or _mode(model_by_node.get(node, []))
        if gpu_type:
            source = "node_gpu_product" if node in products else "gpu_util"
            sink.put(wid, "hardware.gpuType", gpu_type, "high", source)
        if node in allocatable:
            confidence: Confidence = "high" if phases_known else "medium"
            sink.put(wid, "hardware.gpuCount", allocatable[node], "high", "node_gpu_allocatable")
            used = min(allocated.get(node, 0.0), allocatable[node])
            sink.put(wid, "node.allocatedGpuCount", used, confidence, "pod_gpu_requests")
            sink.put(
                wid,
                "node.unallocatedGpuCount",
                allocatable[node] - used,
                confidence,
                "node_gpu_allocatable",
            )
        found = util_by_node.get(node)
        if found:
            expected = int(allocatable.get(node, len(found)))
            sink.put(
                wid,
                "obs.gpu.utilAvgPct",
                fmean(s.value for s in found),
                coverage(found, expected, window),
                "gpu_util",
                "%",
            )


def _map_pending(
    sink: FactSink,
    results: Mapping[str, list[Series]],
    phase: Mapping[tuple[str, str], str],
    gpu_requests: Mapping[tuple[str, str], tuple[float, str | None]],
) -> None:
    ages = {key: item.value for item in results["pod_age_seconds"] if (key := pod_key(item.labels))}
    for key, (count, _node) in sorted(gpu_requests.items()):
        if phase.get(key) != "Pending":
            continue
        wid = f"ns/{key[0]}/pod/{key[1]}"
        sink.put(wid, "job.pendingGpuCount", count, "high", "pod_gpu_requests")
        if key in ages and ages[key] >= 0:
            sink.put(
                wid, "job.pendingSinceMinutes", ages[key] / 60, "high", "pod_age_seconds", "min"
            )


def _deployments(
    results: Mapping[str, list[Series]], phase: Mapping[tuple[str, str], str]
) -> dict[tuple[str, str], _Deployment]:
    owner_of_rs = {
        (item.labels.get("namespace", ""), item.labels.get("replicaset", "")): item.labels.get(
            "owner_name", ""
        )
        for item in results["replicaset_owner"]
    }
    out: dict[tuple[str, str], _Deployment] = {}
    for item in results["pod_owner"]:
        key = pod_key(item.labels)
        if key is None or phase.get(key) != "Running":
            continue
        deployment = owner_of_rs.get((key[0], item.labels.get("owner_name", "")))
        if not deployment:
            continue
        out.setdefault((key[0], deployment), _Deployment(key[0], deployment)).pods.add(key)
    return out


def _by_pod(found: Iterable[Stat]) -> dict[tuple[str, str], list[Stat]]:
    out: dict[tuple[str, str], list[Stat]] = defaultdict(list)
    for stat in found:
        key = pod_key(stat.labels)
        if key:
            out[key].append(stat)
    return out


def _map_deployments(
    sink: FactSink,
    results: Mapping[str, list[Series]],
    phase: Mapping[tuple[str, str], str],
    gpu_requests: Mapping[tuple[str, str], tuple[float, str | None]],
    window: Window,
) -> None:
    spec_replicas = {
        (item.labels.get("namespace", ""), item.labels.get("deployment", "")): item.value
        for item in results["deployment_replicas"]
    }
    products = {
        item.labels["node"]: item.labels["label_nvidia_com_gpu_product"]
        for item in results["node_gpu_product"]
        if item.labels.get("node") and item.labels.get("label_nvidia_com_gpu_product")
    }
    gpu_util = _by_pod(stats(results["gpu_util"]))
    cpu = {key: items[0] for key, items in _by_pod(stats(results["cpu_usage"])).items()}
    cpu_limits = {
        key: item.value for item in results["cpu_limits"] if (key := pod_key(item.labels))
    }
    vllm = {
        name: _by_pod(stats(results[query]))
        for name, query in (
            ("running", "vllm_running"),
            ("waiting", "vllm_waiting"),
            ("kv", "vllm_kv_usage"),
            ("tokens", "vllm_generation_rate"),
        )
    }
    latency = {
        name: {key: item.value for item in results[query] if (key := pod_key(item.labels))}
        for name, query in (("e2e", "vllm_e2e_p99"), ("itl", "vllm_itl_p99"))
    }
    cache_config = {k: i.labels for i in results["vllm_cache_config"] if (k := pod_key(i.labels))}
    model_config = {k: i.labels for i in results["vllm_model_config"] if (k := pod_key(i.labels))}

    for deployment in sorted(_deployments(results, phase).values(), key=lambda d: d.workload_id):
        pods = sorted(deployment.pods)
        gpu_pods = [pod for pod in pods if pod in gpu_requests]
        served = [pod for pod in pods if any(pod in found for found in vllm.values())]
        if not gpu_pods and not served:
            continue  # not a GPU workload: nothing for Steward to say about it
        wid = deployment.workload_id
        put = sink.put

        replicas = spec_replicas.get((deployment.namespace, deployment.name))
        if replicas is not None:
            put(wid, "k8s.replicas", replicas, "high", "deployment_replicas")
        else:
            put(wid, "k8s.replicas", float(len(pods)), "medium", "pod_phase")

        if gpu_pods:
            counts = {gpu_requests[pod][0] for pod in gpu_pods}
            conf: Confidence = "high" if len(counts) == 1 else "medium"
            put(wid, "hardware.gpuCount", max(counts), conf, "pod_gpu_requests")

        util_found = [stat for pod in pods for stat in gpu_util.get(pod, [])]
        models = [s.labels["modelName"] for s in util_found if s.labels.get("modelName")]
        nodes = [gpu_requests[pod][1] for pod in gpu_pods if gpu_requests[pod][1]]
        node_products = [products[node] for node in nodes if node and node in products]
        if node_products:
            put(wid, "hardware.gpuType", _mode(node_products), "high", "node_gpu_product")
        elif models:
            put(wid, "hardware.gpuType", _mode(models), "high", "gpu_util")
        if util_found:
            expected_gpus = int(sum(gpu_requests[pod][0] for pod in gpu_pods)) or len(pods)
            put(
                wid,
                "obs.gpu.utilAvgPct",
                fmean(s.value for s in util_found),
                coverage(util_found, expected_gpus, window),
                "gpu_util",
                "%",
            )

        cpu_pct = [
            cpu[pod].value / cpu_limits[pod] * 100
            for pod in pods
            if pod in cpu and cpu_limits.get(pod, 0) > 0
        ]
        if cpu_pct:
            found = [cpu[pod] for pod in pods if pod in cpu and cpu_limits.get(pod, 0) > 0]
            put(
                wid,
                "obs.cpu.utilAvgPct",
                fmean(cpu_pct),
                coverage(found, len(pods), window),
                "cpu_usage",
                "%",
            )

        names = [
            s.labels["model_name"]
            for found in vllm.values()
            for pod in pods
            for s in found.get(pod, [])
            if s.labels.get("model_name")
        ]
        if names:
            served_name = _mode(names)
            put(
                wid,
                "model.name",
                served_name,
                "high" if len(set(names)) == 1 else "medium",
                "vllm_running",
            )

        _per_replica(
            sink, wid, pods, vllm["running"], "obs.vllm.requestsRunning", "vllm_running", window
        )
        _per_replica(
            sink, wid, pods, vllm["waiting"], "obs.vllm.requestsWaiting", "vllm_waiting", window
        )
        _per_replica(
            sink,
            wid,
            pods,
            vllm["kv"],
            "obs.vllm.kvCacheUsagePct",
            "vllm_kv_usage",
            window,
            scale=100.0,
            units="%",
        )
        _per_replica(
            sink,
            wid,
            pods,
            vllm["tokens"],
            "obs.vllm.tokensPerSec",
            "vllm_generation_rate",
            window,
            units="tokens/s",
        )
        for name, fact_key, query in (
            ("e2e", "obs.requestLatency.p99Ms", "vllm_e2e_p99"),
            ("itl", "obs.vllm.interTokenLatency.p99Ms", "vllm_itl_p99"),
        ):
            values = [latency[name][pod] for pod in pods if pod in latency[name]]
            if values:
                # The slowest replica's p99: what a request routed there experiences.
                conf = "high" if len(values) == len(pods) else "medium"
                put(wid, fact_key, max(values) * 1000, conf, query, "ms")

        _config_facts(sink, wid, pods, cache_config, model_config)


def _per_replica(
    sink: FactSink,
    wid: str,
    pods: Sequence[tuple[str, str]],
    by_pod: Mapping[tuple[str, str], list[Stat]],
    key: str,
    query: str,
    window: Window,
    *,
    scale: float = 1.0,
    units: str | None = None,
) -> None:
    """The mean across the deployment's replicas of a per-pod windowed figure."""
    found = [stat for pod in pods for stat in by_pod.get(pod, [])]
    if not found:
        return
    per_pod = [sum(s.value for s in by_pod[pod]) for pod in pods if by_pod.get(pod)]
    sink.put(wid, key, fmean(per_pod) * scale, coverage(found, len(pods), window), query, units)


def _config_facts(
    sink: FactSink,
    wid: str,
    pods: Sequence[tuple[str, str]],
    cache_config: Mapping[tuple[str, str], Mapping[str, str]],
    model_config: Mapping[tuple[str, str], Mapping[str, str]],
) -> None:
    """vLLM's configuration, from the labels of its `*_config_info` series."""

    def label(table: Mapping[tuple[str, str], Mapping[str, str]], name: str) -> str | None:
        values = [table[pod][name] for pod in pods if pod in table and table[pod].get(name)]
        return _mode(values)

    util = label(cache_config, "gpu_memory_utilization")
    if util is not None and _number(util) is not None:
        sink.put(wid, "vllm.gpuMemoryUtilization", _number(util), "high", "vllm_cache_config")
    kv_dtype = label(cache_config, "cache_dtype")
    if kv_dtype:
        sink.put(wid, "vllm.kvCacheDtype", kv_dtype, "high", "vllm_cache_config")
    dtype = label(model_config, "dtype")
    if dtype:
        sink.put(wid, "runtime.dtype", dtype.removeprefix("torch."), "high", "vllm_model_config")
    length = label(model_config, "max_model_len")
    if length is not None and _number(length) is not None:
        sink.put(wid, "model.maxModelLen", _number(length), "high", "vllm_model_config")
    quantization = label(model_config, "quantization")
    if quantization and quantization.lower() not in ("none", "null"):
        sink.put(wid, "model.quantization", quantization, "high", "vllm_model_config")
    if label(model_config, "max_model_len") or label(model_config, "dtype"):
        sink.put(wid, "runtime.engineType", "vllm", "high", "vllm_model_config")


def _number(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None
