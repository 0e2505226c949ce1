"""What the Prometheus collector makes of DCGM, vLLM and kube-state-metrics answers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx

from bot.collectors.prometheus import PrometheusCollector, PrometheusError
from tests.bot.collectors.promkit import AT, PROM_URL, FakePrometheus, form, small_cluster

DEPLOYMENT = "ns/serve/deployment/mistral"
NODE = "ns/gpu-pool/node/gpu-a"
PENDING = "ns/batch/pod/trainer-0"


@pytest.fixture
def prom() -> Iterator[FakePrometheus]:
    """A fake Prometheus behind respx; tests fill in its series."""
    fake = FakePrometheus()
    with respx.mock(assert_all_called=False) as router:
        router.post(f"{PROM_URL}/api/v1/query").mock(side_effect=fake.handler)
        yield fake


async def collect(**kwargs: Any) -> dict[str, dict[str, dict[str, Any]]]:
    async with httpx.AsyncClient() as client:
        collector = PrometheusCollector(client=client, base_url=PROM_URL, **kwargs)
        return await collector.collect(AT)


def values(facts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {key: fact["value"] for key, fact in facts.items()}


async def test_a_small_cluster_maps_to_the_fact_vocabulary(prom: FakePrometheus) -> None:
    small_cluster(prom)
    workloads = await collect()
    assert set(workloads) == {DEPLOYMENT, NODE, PENDING}
    assert values(workloads[DEPLOYMENT]) == {
        "k8s.replicas": 1,
        "hardware.gpuCount": 1,
        "hardware.gpuType": "NVIDIA-H100-80GB-HBM3",
        "obs.gpu.utilAvgPct": 20,
        "obs.cpu.utilAvgPct": 37.5,
        "model.name": "mistralai/Mistral-7B-Instruct-v0.3",
        "obs.vllm.requestsRunning": 2,
        "obs.vllm.requestsWaiting": 0,
        "obs.vllm.kvCacheUsagePct": 5,
        "obs.vllm.tokensPerSec": 40,
        "obs.requestLatency.p99Ms": 1250,
        "obs.vllm.interTokenLatency.p99Ms": 40,
        "vllm.gpuMemoryUtilization": 0.9,
        "vllm.kvCacheDtype": "auto",
        "runtime.dtype": "bfloat16",
        "model.maxModelLen": 8192,
        "runtime.engineType": "vllm",
    }
    assert values(workloads[NODE]) == {
        "hardware.gpuType": "NVIDIA-H100-80GB-HBM3",
        "hardware.gpuCount": 1,
        "node.allocatedGpuCount": 1,
        "node.unallocatedGpuCount": 0,
        "obs.gpu.utilAvgPct": 20,
    }
    assert values(workloads[PENDING]) == {"job.pendingGpuCount": 4, "job.pendingSinceMinutes": 45}


async def test_every_fact_says_where_it_came_from(prom: FakePrometheus) -> None:
    small_cluster(prom)
    workloads = await collect()
    util = workloads[DEPLOYMENT]["obs.gpu.utilAvgPct"]
    assert util["dataConfidence"] == "high"
    assert util["units"] == "%"
    assert util["observedAt"] == "2026-07-20T12:00:00Z"
    assert util["source"]["type"] == "prometheus" and util["source"]["method"] == "promql"
    assert "avg_over_time(DCGM_FI_DEV_GPU_UTIL[3600s])" in util["source"]["ref"]
    for facts in workloads.values():
        for fact in facts.values():
            assert fact["source"]["ref"] in prom.names
    times = {form(request)["time"] for request in prom.seen}
    assert times == {f"{AT.timestamp():.3f}"}


async def test_an_empty_prometheus_gives_no_workloads(prom: FakePrometheus) -> None:
    assert await collect() == {}


async def test_missing_series_leave_facts_absent_never_zero(prom: FakePrometheus) -> None:
    small_cluster(prom)
    for name in ("gpu_util", "vllm_running", "vllm_kv_usage", "vllm_e2e_p99", "cpu_limits"):
        prom.series.pop(name)
    facts = (await collect())[DEPLOYMENT]
    for key in (
        "obs.gpu.utilAvgPct",
        "obs.vllm.requestsRunning",
        "obs.vllm.kvCacheUsagePct",
        "obs.requestLatency.p99Ms",
        "obs.cpu.utilAvgPct",
    ):
        assert key not in facts
    # What is there still is.
    assert facts["obs.vllm.requestsWaiting"]["value"] == 0
    assert facts["model.name"]["value"].startswith("mistralai/")


async def test_nan_and_infinite_samples_are_dropped(prom: FakePrometheus) -> None:
    small_cluster(prom)
    prom.series.pop("gpu_util")
    prom.series.pop("vllm_e2e_p99")
    prom.windowed("gpu_util", "NaN", Hostname="gpu-a", namespace="serve", pod="mistral-5d9c-x1")
    prom.add("vllm_e2e_p99", "+Inf", namespace="serve", pod="mistral-5d9c-x1")
    workloads = await collect()
    assert "obs.gpu.utilAvgPct" not in workloads[DEPLOYMENT]
    assert "obs.gpu.utilAvgPct" not in workloads[NODE]
    assert "obs.requestLatency.p99Ms" not in workloads[DEPLOYMENT]


async def test_stale_series_are_low_confidence(prom: FakePrometheus) -> None:
    small_cluster(prom)
    prom.series.pop("gpu_util")
    prom.windowed(
        "gpu_util", 20, fresh=False, Hostname="gpu-a", namespace="serve", pod="mistral-5d9c-x1"
    )
    facts = (await collect())[DEPLOYMENT]
    assert facts["obs.gpu.utilAvgPct"]["value"] == 20
    assert facts["obs.gpu.utilAvgPct"]["dataConfidence"] == "low"


async def test_partial_windows_and_missing_replicas_are_medium_confidence(
    prom: FakePrometheus,
) -> None:
    small_cluster(prom)
    prom.series.pop("gpu_util")
    prom.windowed(
        "gpu_util", 20, samples=10, Hostname="gpu-a", namespace="serve", pod="mistral-5d9c-x1"
    )
    # A second replica that vLLM does not report on.
    pod = {"namespace": "serve", "pod": "mistral-5d9c-x2"}
    prom.add("pod_phase", 1, phase="Running", **pod)
    prom.add("pod_owner", 1, owner_kind="ReplicaSet", owner_name="mistral-5d9c", **pod)
    prom.add("pod_gpu_requests", 1, node="gpu-b", **pod)
    facts = (await collect())[DEPLOYMENT]
    assert facts["obs.gpu.utilAvgPct"]["dataConfidence"] == "medium"
    assert facts["obs.vllm.requestsRunning"]["dataConfidence"] == "medium"
    assert facts["obs.vllm.requestsRunning"]["value"] == 2  # the mean of what is known
    assert facts["obs.requestLatency.p99Ms"]["dataConfidence"] == "medium"


async def test_renamed_metrics_and_labels_are_read(prom: FakePrometheus) -> None:
    queries = prom.queries
    assert "vllm:kv_cache_usage_perc" in queries["vllm_kv_usage"]
    assert "vllm:gpu_cache_usage_perc" in queries["vllm_kv_usage"]
    assert "vllm:inter_token_latency_seconds_bucket" in queries["vllm_itl_p99"]
    assert "vllm:time_per_output_token_seconds_bucket" in queries["vllm_itl_p99"]
    # Newer DCGM exporters write `hostname`; a scrape's own labels push the exporter's
    # pod labels to `exported_*`.
    prom.add("node_gpu_allocatable", 8, node="gpu-z", resource="nvidia_com_gpu")
    prom.windowed(
        "gpu_util",
        55,
        hostname="gpu-z",
        modelName="NVIDIA A100-SXM4-80GB",
        namespace="gpu-operator",
        pod="dcgm-exporter-abc",
        exported_namespace="serve",
        exported_pod="llama-1",
    )
    workloads = await collect()
    node = workloads["ns/gpu-pool/node/gpu-z"]
    assert node["hardware.gpuType"]["value"] == "NVIDIA A100-SXM4-80GB"
    assert node["obs.gpu.utilAvgPct"]["value"] == 55
    assert node["node.unallocatedGpuCount"]["value"] == 8


async def test_finished_pods_do_not_hold_gpus(prom: FakePrometheus) -> None:
    prom.add("node_gpu_allocatable", 8, node="gpu-z", resource="nvidia_com_gpu")
    prom.add("pod_gpu_requests", 2, node="gpu-z", namespace="jobs", pod="done-1")
    prom.add("pod_gpu_requests", 3, node="gpu-z", namespace="jobs", pod="running-1")
    prom.add("pod_phase", 1, phase="Running", namespace="jobs", pod="running-1")
    node = (await collect())["ns/gpu-pool/node/gpu-z"]
    assert node["node.allocatedGpuCount"]["value"] == 3
    assert node["node.unallocatedGpuCount"]["value"] == 5


async def test_a_bearer_token_is_sent(prom: FakePrometheus) -> None:
    await collect(token="s3cret-token")
    assert prom.seen
    assert {r.headers["authorization"] for r in prom.seen} == {"Bearer s3cret-token"}


@pytest.mark.parametrize(
    ("response", "needle"),
    [
        (httpx.Response(500, text="boom"), "answered 500"),
        (httpx.Response(401), "token file"),
        (httpx.Response(200, text="<html>login</html>"), "answered 200"),
        (
            httpx.Response(200, json={"status": "error", "error": "parse error"}),
            "parse error",
        ),
        (
            httpx.Response(200, json={"status": "success", "data": {"resultType": "matrix"}}),
            "where a vector was expected",
        ),
        (httpx.ReadTimeout("slow"), "did not answer within 10s"),
        (httpx.ConnectError("refused"), "cannot reach Prometheus"),
    ],
)
async def test_prometheus_errors_say_what_to_check(response: Any, needle: str) -> None:
    with respx.mock() as router:
        router.post(f"{PROM_URL}/api/v1/query").mock(
            side_effect=response if isinstance(response, Exception) else None,
            return_value=None if isinstance(response, Exception) else response,
        )
        with pytest.raises(PrometheusError, match=needle):
            await collect()
