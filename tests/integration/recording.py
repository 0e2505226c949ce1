"""The recorded cluster behind tests/fixtures/small-gpu-cluster.openmetrics, as code.

An hour of one-minute scrapes ending at END of a small GPU cluster:

- `serve/mistral`: Mistral-7B (bf16, 8k context) on one H100 at low load — the
  H100 is far more than it needs (tier_misplacement);
- `serve/llama`: Llama-3.1-8B on four A10G replicas at 5 % GPU utilisation, run by
  an older vLLM (`vllm:gpu_cache_usage_perc`, no model config info) whose DCGM
  exporter writes `hostname` (idle_allocation); one replica's GPU series stops
  20 minutes before END;
- node `gpu-a100-1`: eight A100s, two of them used by a fine-tuning Job
  (dark_capacity);
- `batch/trainer-0`: a pod waiting 45 minutes for four GPUs.

`python -m tests.integration.recording > tests/fixtures/small-gpu-cluster.openmetrics`
rewrites the file; a test checks the two agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

END = datetime(2026, 7, 20, 12, 0, tzinfo=UTC)
STEP = 60  # the scrape interval; pulls of this recording set STEWARD_PULL_SCRAPE_INTERVAL_SECONDS
SPAN = 65 * 60  # the one-hour window and some slack
STATE_SPAN = 10 * 60  # kube-state-metrics series are only read at END (5-minute lookback)
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "small-gpu-cluster.openmetrics"

MISTRAL = "mistralai/Mistral-7B-Instruct-v0.3"
LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
LLAMA_PODS = [f"llama-7f8b9-{suffix}" for suffix in ("a1", "b2", "c3", "d4")]
MISTRAL_POD = "mistral-6c5d4-x9"
STALE_POD = LLAMA_PODS[3]
STALE_FROM = int(END.timestamp()) - 20 * 60


def _times(span: int = SPAN) -> list[int]:
    end = int(END.timestamp())
    return list(range(end - span, end + 1, STEP))


def _number(value: float) -> str:
    # Exact digits: a pod's creation time must survive as a timestamp, not 1.78e+09.
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _labels(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{key}="{value}"' for key, value in labels.items()) + "}"


class Recording:
    """OpenMetrics text, one family at a time (families must not interleave)."""

    def __init__(self) -> None:
        self.families: dict[str, tuple[str, list[str]]] = {}

    def sample(
        self, family: str, kind: str, name: str, labels: dict[str, str], value: float, at: int
    ) -> None:
        """One sample of `name` (in `family`, of OpenMetrics type `kind`)."""
        lines = self.families.setdefault(family, (kind, []))[1]
        lines.append(f"{name}{_labels(labels)} {_number(value)} {at}")

    def gauge(
        self,
        name: str,
        labels: dict[str, str],
        value: float,
        *,
        until: int | None = None,
        span: int = SPAN,
    ) -> None:
        """A constant gauge scraped every STEP seconds over `span` (until `until`)."""
        for at in _times(span):
            if until is None or at <= until:
                self.sample(name, "gauge", name, labels, value, at)

    def state(self, name: str, labels: dict[str, str], value: float) -> None:
        """A kube-state-metrics-like gauge, recorded only for the last minutes."""
        self.gauge(name, labels, value, span=STATE_SPAN)

    def counter(self, family: str, labels: dict[str, str], per_second: float) -> None:
        """A counter rising at `per_second`."""
        for i, at in enumerate(_times()):
            self.sample(family, "counter", f"{family}_total", labels, per_second * STEP * i, at)

    def histogram(
        self, family: str, labels: dict[str, str], per_second: float, shares: dict[str, float]
    ) -> None:
        """A histogram observing `per_second` events, cumulative `shares` per bucket."""
        for i, at in enumerate(_times()):
            count = per_second * STEP * i
            for le, share in shares.items():
                self.sample(
                    family,
                    "histogram",
                    f"{family}_bucket",
                    {**labels, "le": le},
                    round(count * share, 6),
                    at,
                )
            self.sample(family, "histogram", f"{family}_count", labels, count, at)
            self.sample(family, "histogram", f"{family}_sum", labels, count * 0.5, at)

    def render(self) -> str:
        """The whole recording."""
        out: list[str] = []
        for family, (kind, lines) in self.families.items():
            out.append(f"# TYPE {family} {kind}")
            out.extend(lines)
        out.append("# EOF")
        return "\n".join(out) + "\n"


def _pods() -> Iterator[tuple[str, str, str, str, str, int]]:
    """(namespace, pod, phase, node, owner kind:name, GPUs) of every GPU pod."""
    yield "serve", MISTRAL_POD, "Running", "gpu-h100-1", "ReplicaSet:mistral-6c5d4", 1
    for pod in LLAMA_PODS:
        yield "serve", pod, "Running", "gpu-a10g-1", "ReplicaSet:llama-7f8b9", 1
    yield "batch", "finetune-0", "Running", "gpu-a100-1", "Job:finetune", 2
    yield "batch", "trainer-0", "Pending", "", "Job:trainer", 4


def build() -> Recording:
    """Every series of the recorded cluster."""
    rec = Recording()
    end = int(END.timestamp())
    nodes = {
        "gpu-h100-1": (1, "NVIDIA-H100-80GB-HBM3"),
        "gpu-a10g-1": (4, "NVIDIA-A10G"),
        "gpu-a100-1": (8, "NVIDIA-A100-SXM4-80GB"),
    }
    for node, (gpus, _product) in nodes.items():
        rec.state(
            "kube_node_status_allocatable",
            {"node": node, "resource": "nvidia_com_gpu", "unit": "integer"},
            gpus,
        )
    for node, (_gpus, product) in nodes.items():
        rec.state("kube_node_labels", {"node": node, "label_nvidia_com_gpu_product": product}, 1)
    for ns, pod, _phase, node, _owner, gpus in _pods():
        rec.state(
            "kube_pod_container_resource_requests",
            {
                "namespace": ns,
                "pod": pod,
                "container": "main",
                "node": node,
                "resource": "nvidia_com_gpu",
                "unit": "integer",
            },
            gpus,
        )
    for ns, pod, phase, _node, _owner, _gpus in _pods():
        for candidate in ("Pending", "Running", "Succeeded", "Failed"):
            rec.state(
                "kube_pod_status_phase",
                {"namespace": ns, "pod": pod, "phase": candidate},
                1 if candidate == phase else 0,
            )
    for ns, pod, _phase, _node, owner, _gpus in _pods():
        kind, name = owner.split(":")
        rec.state(
            "kube_pod_owner",
            {
                "namespace": ns,
                "pod": pod,
                "owner_kind": kind,
                "owner_name": name,
                "owner_is_controller": "true",
            },
            1,
        )
    for ns, pod, _phase, _node, _owner, _gpus in _pods():
        created = end - 45 * 60 if pod == "trainer-0" else end - 3 * 86400
        rec.state("kube_pod_created", {"namespace": ns, "pod": pod}, created)
    for rs, deployment in (("mistral-6c5d4", "mistral"), ("llama-7f8b9", "llama")):
        rec.state(
            "kube_replicaset_owner",
            {
                "namespace": "serve",
                "replicaset": rs,
                "owner_kind": "Deployment",
                "owner_name": deployment,
                "owner_is_controller": "true",
            },
            1,
        )
    for deployment, replicas in (("mistral", 1), ("llama", 4)):
        rec.state(
            "kube_deployment_spec_replicas",
            {"namespace": "serve", "deployment": deployment},
            replicas,
        )
    rec.state(
        "kube_pod_container_resource_limits",
        {
            "namespace": "serve",
            "pod": MISTRAL_POD,
            "container": "vllm",
            "resource": "cpu",
            "unit": "core",
        },
        4,
    )

    # DCGM: the H100 node's exporter writes `Hostname`, the A10G node's `hostname`.
    dcgm = [
        (
            {
                "Hostname": "gpu-h100-1",
                "modelName": "NVIDIA H100 80GB HBM3",
                "gpu": "0",
                "namespace": "serve",
                "pod": MISTRAL_POD,
            },
            30.0,
            None,
        ),
    ]
    for i, pod in enumerate(LLAMA_PODS):
        dcgm.append(
            (
                {
                    "hostname": "gpu-a10g-1",
                    "modelName": "NVIDIA A10G",
                    "gpu": str(i),
                    "namespace": "serve",
                    "pod": pod,
                },
                5.0,
                STALE_FROM if pod == STALE_POD else None,
            )
        )
    for i in range(8):
        busy = i < 2
        labels = {"Hostname": "gpu-a100-1", "modelName": "NVIDIA A100-SXM4-80GB", "gpu": str(i)}
        if busy:
            labels.update(namespace="batch", pod="finetune-0")
        dcgm.append((labels, 90.0 if busy else 0.0, None))
    for labels, util, until in dcgm:
        rec.gauge("DCGM_FI_DEV_GPU_UTIL", labels, util, until=until)

    rec.counter(
        "container_cpu_usage_seconds",
        {"namespace": "serve", "pod": MISTRAL_POD, "container": "vllm"},
        1.0,
    )

    mistral = {"namespace": "serve", "pod": MISTRAL_POD, "model_name": MISTRAL}
    rec.gauge("vllm:num_requests_running", mistral, 2)
    for pod in LLAMA_PODS:
        rec.gauge(
            "vllm:num_requests_running",
            {"namespace": "serve", "pod": pod, "model_name": LLAMA},
            0.2,
        )
    rec.gauge("vllm:num_requests_waiting", mistral, 0)
    for pod in LLAMA_PODS:
        rec.gauge(
            "vllm:num_requests_waiting", {"namespace": "serve", "pod": pod, "model_name": LLAMA}, 0
        )
    rec.gauge("vllm:kv_cache_usage_perc", mistral, 0.05)
    for pod in LLAMA_PODS:
        rec.gauge(
            "vllm:gpu_cache_usage_perc",
            {"namespace": "serve", "pod": pod, "model_name": LLAMA},
            0.02,
        )
    rec.counter("vllm:generation_tokens", mistral, 40)
    for pod in LLAMA_PODS:
        rec.counter(
            "vllm:generation_tokens", {"namespace": "serve", "pod": pod, "model_name": LLAMA}, 2
        )
    rec.histogram(
        "vllm:e2e_request_latency_seconds",
        mistral,
        0.5,
        {"0.5": 0.5, "1.0": 0.9, "2.5": 1.0, "+Inf": 1.0},
    )
    rec.state(
        "vllm:cache_config_info",
        {
            "namespace": "serve",
            "pod": MISTRAL_POD,
            "block_size": "16",
            "cache_dtype": "auto",
            "gpu_memory_utilization": "0.9",
        },
        1,
    )
    rec.state(
        "vllm:model_config_info", {**mistral, "dtype": "torch.bfloat16", "max_model_len": "8192"}, 1
    )
    return rec


def render() -> str:
    """The OpenMetrics text of the recording."""
    return build().render()


if __name__ == "__main__":
    import sys

    sys.stdout.write(render())
