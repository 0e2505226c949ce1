"""Facts from a cluster's Prometheus: DCGM, vLLM, kube-state-metrics and cAdvisor.

Every figure is a PromQL instant query evaluated at one time `at` over one
window, mapped into the fact vocabulary of SPEC §4.3 per workload:
`ns/<ns>/deployment/<name>` (served models), `ns/gpu-pool/node/<node>` (GPU
nodes) and `ns/<ns>/pod/<name>` (pending GPU pods). A series that is missing
gives no fact at all (never a zero); NaN and infinite samples are dropped;
stale or partial series lower the fact's `dataConfidence`.

Three modules, depending one way, so the PromQL and the mapping can be read
and tested without any network in sight:

- `queries`: the PromQL side: the window, every named query, and how several
  are sent in one request and told apart again;
- `mapping`: answers to facts, pure: confidence from staleness and coverage;
- `client`: the HTTP side: runs the queries through an injected
  `httpx.AsyncClient` and hands the answers to the mapping.

`client` imports `queries` and `mapping`; `mapping` imports `queries`; neither
imports `client`.
"""

from bot.collectors.prometheus.client import PrometheusCollector, PrometheusError, instant_query
from bot.collectors.prometheus.mapping import (
    NODE_NAMESPACE,
    Confidence,
    FactSink,
    Stat,
    coverage,
    map_facts,
    node_id,
    node_of,
    pod_key,
    stats,
)
from bot.collectors.prometheus.queries import (
    QUERIES_PER_REQUEST,
    QUERY_LABEL,
    Series,
    Window,
    build_queries,
    combined,
    p99,
    request_groups,
    split,
    windowed,
)

__all__ = [
    "NODE_NAMESPACE",
    "QUERIES_PER_REQUEST",
    "QUERY_LABEL",
    "Confidence",
    "FactSink",
    "PrometheusCollector",
    "PrometheusError",
    "Series",
    "Stat",
    "Window",
    "build_queries",
    "combined",
    "coverage",
    "instant_query",
    "map_facts",
    "node_id",
    "node_of",
    "p99",
    "pod_key",
    "request_groups",
    "split",
    "stats",
    "windowed",
]
