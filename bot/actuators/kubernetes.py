"""The Kubernetes actuator: PATCH Deployments through each cluster's API server.

Every patch is a JSON patch that carries the resourceVersion read just before
(the API server answers 409 when the Deployment changed in between), checks
that each field still holds the value the plan was computed from, and marks
the Deployment with the finding it carries out. Tokens are read from files at
use time and never logged nor returned.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from bot.actuators import ActuationRequest, ActuationResult, ClusterAccess
from engine.plans import Change, Target

FINDING_ANNOTATION = "steward.io/finding-id"


class PlanError(Exception):
    """The plan cannot be applied to the Deployment as it is now."""


@dataclass(frozen=True)
class Endpoint:
    """A resolved API server: URL, bearer token and TLS verification."""

    url: str
    token: str
    verify: ssl.SSLContext | bool


def _pointer(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _read(path: str, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise PlanError(f"cannot read the {what} {path}: {exc.strerror}") from exc


def _tls(ca_file: str | None = None, ca_data: str | None = None) -> ssl.SSLContext | bool:
    if ca_file:
        return ssl.create_default_context(cafile=ca_file)
    if ca_data:
        return ssl.create_default_context(cadata=base64.b64decode(ca_data).decode())
    return True


def resolve(access: ClusterAccess) -> Endpoint:
    """The API server of a cluster, from its kubeconfig or its URL and token file."""
    if access.api_url and access.token_file:
        token = _read(access.token_file, "token file")
        return Endpoint(access.api_url.rstrip("/"), token, _tls(access.ca_file))
    if access.kubeconfig:
        return _from_kubeconfig(access.kubeconfig)
    raise PlanError(
        f"cluster '{access.name}' has no Kubernetes credentials; run `steward cluster set "
        f"{access.name} --kubeconfig PATH` or `--k8s-api-url URL --k8s-token-file PATH`"
    )


def _from_kubeconfig(path: str) -> Endpoint:
    try:
        config = yaml.safe_load(_read(path, "kubeconfig")) or {}
        current = config.get("current-context")
        context = next(c["context"] for c in config["contexts"] if c["name"] == current)
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
    except (KeyError, StopIteration, TypeError, yaml.YAMLError) as exc:
        raise PlanError(f"the kubeconfig {path} has no usable current context") from exc
    token = user.get("token") or (
        _read(user["tokenFile"], "token file") if user.get("tokenFile") else None
    )
    if not token:
        raise PlanError(f"the kubeconfig {path} has no bearer token for its current user")
    verify = _tls(cluster.get("certificate-authority"), cluster.get("certificate-authority-data"))
    return Endpoint(str(cluster["server"]).rstrip("/"), str(token), verify)


def _gpu_container(spec: dict[str, Any]) -> int:
    containers = spec["template"]["spec"]["containers"]
    for index, container in enumerate(containers):
        limits = container.get("resources", {}).get("limits", {})
        if "nvidia.com/gpu" in limits:
            return index
    return 0


def _arg_value(args: list[str], flag: str) -> str | None:
    for index, arg in enumerate(args):
        if arg == flag and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def _set_arg(args: list[str], flag: str, value: Any) -> list[str]:
    result, index, done = [], 0, False
    while index < len(args):
        arg = args[index]
        if arg == flag:
            result += [flag, str(value)]
            index, done = index + 2, True
            continue
        if arg.startswith(flag + "="):
            result.append(f"{flag}={value}")
            index, done = index + 1, True
            continue
        result.append(arg)
        index += 1
    return result if done else [*result, flag, str(value)]


def _mismatch(change: Change, actual: Any) -> PlanError:
    return PlanError(
        f"{change.kind} {change.key or ''} is {actual!r} on the cluster, the plan expected "
        f"{change.before!r}; the Deployment changed since the finding — run `steward scan`"
    )


def build_patch(deployment: dict[str, Any], target: Target, finding: str) -> list[dict[str, Any]]:
    """The JSON patch for `target`, checked against the Deployment as read."""
    metadata = deployment["metadata"]
    spec = deployment["spec"]
    ops: list[dict[str, Any]] = [
        {"op": "replace", "path": "/metadata/resourceVersion", "value": metadata["resourceVersion"]}
    ]
    if "annotations" not in metadata:
        ops.append({"op": "add", "path": "/metadata/annotations", "value": {}})
    ops.append(
        {
            "op": "add",
            "path": f"/metadata/annotations/{_pointer(FINDING_ANNOTATION)}",
            "value": finding,
        }
    )
    index = _gpu_container(spec)
    container = spec["template"]["spec"]["containers"][index]
    base = f"/spec/template/spec/containers/{index}"
    args: list[str] = list(container.get("args", []))
    args_changed = False
    for change in target.changes:
        if change.kind == "replicas":
            actual = spec.get("replicas", 1)
            if actual != change.before:
                raise _mismatch(change, actual)
            ops.append({"op": "replace", "path": "/spec/replicas", "value": change.after})
        elif change.kind == "node_selector":
            selector = spec["template"]["spec"].get("nodeSelector")
            actual = (selector or {}).get(change.key)
            if actual is not None and actual != change.before:
                raise _mismatch(change, actual)
            if selector is None:
                ops.append(
                    {
                        "op": "add",
                        "path": "/spec/template/spec/nodeSelector",
                        "value": {change.key: change.after},
                    }
                )
            else:
                path = f"/spec/template/spec/nodeSelector/{_pointer(str(change.key))}"
                ops.append({"op": "add", "path": path, "value": change.after})
        elif change.kind == "gpu_limit":
            resources = container.get("resources", {})
            actual = resources.get("limits", {}).get(change.key)
            if actual is None or str(actual) != str(change.before):
                raise _mismatch(change, actual)
            for section in ("limits", "requests"):
                if change.key in resources.get(section, {}):
                    path = f"{base}/resources/{section}/{_pointer(str(change.key))}"
                    ops.append({"op": "replace", "path": path, "value": str(change.after)})
        elif change.kind == "vllm_arg":
            flag = str(change.key)
            actual = _arg_value(args, flag)
            default_ok = actual is None and change.before in (None, "auto", 1)
            if not default_ok and str(actual) != str(change.before):
                raise _mismatch(change, actual)
            args = _set_arg(args, flag, change.after)
            args_changed = True
    if args_changed:
        ops.append({"op": "add", "path": f"{base}/args", "value": args})
    return ops


class KubernetesActuator:
    """Applies each target's JSON patch; handles 409, 403, 404 and 5xx clearly."""

    name = "kubernetes"

    def __init__(
        self,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        attempts: int = 3,
        backoff_seconds: float = 0.5,
        timeout_seconds: float = 15.0,
    ) -> None:
        self._transport = transport
        self._attempts = attempts
        self._backoff = backoff_seconds
        self._timeout = timeout_seconds

    async def apply(self, request: ActuationRequest) -> ActuationResult:
        """Patch every target in order; stop at the first that fails."""
        log: list[dict[str, Any]] = []
        for target in request.plan.targets:
            access = request.clusters.get(target.cluster, ClusterAccess(name=target.cluster))
            try:
                endpoint = resolve(access)
                detail = await self._patch(endpoint, target, request.finding, log)
            except PlanError as exc:
                return ActuationResult(False, str(exc), log)
            except _Conflict as exc:
                return ActuationResult(False, str(exc), log, conflict=True)
        return ActuationResult(True, detail if request.plan.targets else "nothing to do", log)

    async def _patch(
        self, endpoint: Endpoint, target: Target, finding: str, log: list[dict[str, Any]]
    ) -> str:
        path = f"/apis/apps/v1/namespaces/{target.namespace}/deployments/{target.deployment}"
        where = f"{target.cluster}: deployment {target.namespace}/{target.deployment}"
        async with httpx.AsyncClient(
            base_url=endpoint.url,
            headers={"Authorization": f"Bearer {endpoint.token}"},
            verify=endpoint.verify,
            timeout=self._timeout,
            transport=self._transport,
        ) as client:
            current = await self._send(client, "GET", path, where, log)
            ops = build_patch(current.json(), target, finding)
            response = await self._send(
                client,
                "PATCH",
                path,
                where,
                log,
                json=ops,
                headers={"Content-Type": "application/json-patch+json"},
                ops=ops,
            )
            if response.status_code == 409:
                latest = await self._send(client, "GET", path, where, log)
                version = latest.json().get("metadata", {}).get("resourceVersion")
                raise _Conflict(
                    f"conflict: {where} changed while patching (now at resourceVersion "
                    f"{version}); nothing was applied — run `steward scan` and decide again"
                )
        return f"patched {where}"

    async def _send(
        self,
        client: httpx.AsyncClient,
        method: str,
        path: str,
        where: str,
        log: list[dict[str, Any]],
        *,
        ops: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        verb = {"GET": "get", "PATCH": "patch"}[method]
        for attempt in range(1, self._attempts + 1):
            entry: dict[str, Any] = {"method": method, "path": path, "attempt": attempt}
            if ops is not None:
                entry["patch"] = ops
            try:
                response = await client.request(method, path, **kwargs)
            except httpx.TimeoutException:
                entry["error"] = "timeout"
                log.append(entry)
            except httpx.TransportError as exc:
                entry["error"] = type(exc).__name__
                log.append(entry)
            else:
                entry["status"] = response.status_code
                log.append(entry)
                if response.status_code == 403:
                    raise PlanError(
                        f"forbidden: Steward's service account may not `{verb}` "
                        f"deployments.apps in namespace {path.split('/')[5]} ({where}); apply "
                        "deploy/rbac/actuator.yaml or grant that verb"
                    )
                if response.status_code == 404:
                    raise PlanError(f"not found: {where} does not exist on the cluster")
                if response.status_code == 401:
                    raise PlanError(f"unauthorised: the API server refused the token for {where}")
                if response.status_code < 500:
                    if response.status_code >= 400 and response.status_code != 409:
                        raise PlanError(
                            f"the API server refused the {method} of {where} "
                            f"({response.status_code}): {response.text[:200]}"
                        )
                    return response
            if attempt < self._attempts:
                await asyncio.sleep(self._backoff * 2 ** (attempt - 1))
        raise PlanError(
            f"the API server did not answer the {method} of {where} after {self._attempts} attempts"
        )


class _Conflict(Exception):
    """The Deployment changed between read and patch."""
