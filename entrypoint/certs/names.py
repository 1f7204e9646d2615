"""The Kubernetes names a cluster's certificates must cover, and the checks on the names people give."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from entrypoint import layout
from entrypoint.errors import Problem
from entrypoint.pki.names import dns_name_problem, normalise, san_problem

DEFAULT_CLUSTER = "citusdemo"
DEFAULT_NAMESPACE = "default"
DEFAULT_DOMAIN = layout.CLUSTER_DOMAIN
DEFAULT_GROUPS = 3
DEFAULT_COORDINATOR_REPLICAS = 3  # as the chart's coordinator.replicas
DEFAULT_WORKER_REPLICAS = 2  # as the chart's workers.replicas
MAX_GROUPS = 1000
MAX_REPLICAS = 100

_LABEL_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_LABEL_1035 = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_CLIENT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,62}$")
# `-workers` is appended to the cluster name and a Service name is at most 63 characters.
_MAX_CLUSTER_LEN = 63 - len("-workers")


@dataclass(frozen=True)
class ClusterNames:
    """The Kubernetes names a cluster's certificates must cover."""

    cluster: str = DEFAULT_CLUSTER
    namespace: str = DEFAULT_NAMESPACE
    domain: str = DEFAULT_DOMAIN
    groups: int = DEFAULT_GROUPS
    extra: Tuple[str, ...] = field(default_factory=tuple)
    coordinator_replicas: int = DEFAULT_COORDINATOR_REPLICAS
    worker_replicas: int = DEFAULT_WORKER_REPLICAS

    def pods(self) -> List[Tuple[int, str]]:
        """(group, pod name) of every member, as the chart's StatefulSets name them."""
        return [(group, f"{self.cluster}-{group}-{ordinal}") for group in range(self.groups)
                for ordinal in range(self.coordinator_replicas if group == 0 else self.worker_replicas)]


def check_cluster_names(names: ClusterNames) -> List[Problem]:
    """Return one Problem per invalid field of `names` (empty when all are valid)."""
    problems: List[Problem] = []
    if len(names.cluster) > _MAX_CLUSTER_LEN or not _LABEL_1035.match(names.cluster):
        problems.append(Problem(
            "--cluster (CLUSTER_NAME)",
            f"cluster name {names.cluster!r} is not valid: Services '<cluster>-<group>' and "
            f"'<cluster>-workers' must be DNS-1035 labels",
            f"use lowercase letters, digits and '-', start with a letter, end with a letter or digit, "
            f"at most {_MAX_CLUSTER_LEN} characters (e.g. {DEFAULT_CLUSTER})"))
    if not _LABEL_1123.match(names.namespace):
        problems.append(Problem(
            "--namespace (NAMESPACE)", f"namespace {names.namespace!r} is not a valid Kubernetes namespace",
            f"use lowercase letters, digits and '-', start and end with a letter or digit, at most 63 "
            f"characters (e.g. {DEFAULT_NAMESPACE})"))
    domain_problem = dns_name_problem(names.domain, wildcard_ok=False)
    if domain_problem:
        problems.append(Problem("--domain (PCK_CLUSTER_DOMAIN)",
                                f"cluster domain {names.domain!r} is not valid: {domain_problem}",
                                f"use your cluster's DNS domain (e.g. {DEFAULT_DOMAIN})"))
    if not 1 <= names.groups <= MAX_GROUPS:
        problems.append(Problem("--groups", f"{names.groups} is out of range",
                                f"give the number of Citus groups (coordinator 0 plus workers), "
                                f"between 1 and {MAX_GROUPS}"))
    for flag, count in (("--coordinator-replicas", names.coordinator_replicas),
                        ("--worker-replicas", names.worker_replicas)):
        if not 1 <= count <= MAX_REPLICAS:
            problems.append(Problem(flag, f"{count} is out of range",
                                    f"give the members per group, 1 to {MAX_REPLICAS}"))
    for extra in names.extra:
        problem = san_problem(extra)
        if problem:
            problems.append(Problem("--san", f"{extra!r} is not a valid certificate name: {problem}",
                                    "give a DNS name or an IP address"))
    if not problems:
        longest = max(server_names(names), key=len)
        problem = san_problem(longest)
        if problem:
            problems.append(Problem("--cluster, --namespace, --domain",
                                    f"the name {longest!r} built from them is not a valid DNS name ({problem})",
                                    "shorten one of them"))
    return problems


def server_names(names: ClusterNames) -> List[str]:
    """Return every name the server certificate carries, in a stable order, without duplicates.

    Pods are reached through the headless Service named after the cluster, so one
    wildcard covers all of them; each group's Service, the workers Service, the pooler's
    Service (`<cluster>-pooler`, the name clients reach PgBouncer by: listed whether or
    not a pooler runs, so turning one on needs no new certificate) and the headless
    Service are listed in the four forms a client in the cluster may use.
    """
    c, ns, domain = names.cluster, names.namespace, names.domain
    services = [c] + [f"{c}-{group}" for group in range(names.groups)] + [f"{c}-workers", f"{c}-pooler"]
    out: List[str] = [f"*.{c}.{ns}.svc.{domain}"]
    for service in services:
        out += _service_forms(service, names)
    out += ["localhost", "127.0.0.1", "::1"]
    out += [normalise(extra) for extra in names.extra]
    return list(dict.fromkeys(out))


def _service_forms(service: str, names: ClusterNames) -> List[str]:
    ns, domain = names.namespace, names.domain
    return [service, f"{service}.{ns}", f"{service}.{ns}.svc", f"{service}.{ns}.svc.{domain}"]


def member_names(names: ClusterNames, group: int, pod: str) -> List[str]:
    """The names one member's own certificate carries (`--per-member`): exact, no wildcard.

    Its stable pod name in the forms peers use, its group's Service (it serves there while
    it is the primary), the workers Service for a worker, the headless Service, loopback.
    """
    c = names.cluster
    out = [f"{pod}.{c}.{names.namespace}.svc.{names.domain}", f"{pod}.{c}.{names.namespace}.svc",
           f"{pod}.{c}.{names.namespace}", f"{pod}.{c}"]
    for service in [f"{c}-{group}"] + ([f"{c}-workers"] if group > 0 else []) + [c]:
        out += _service_forms(service, names)
    out += ["localhost", "127.0.0.1", "::1"] + [normalise(extra) for extra in names.extra]
    return list(dict.fromkeys(out))


def check_client_name(user: str) -> Optional[Problem]:
    """Return why `user` cannot name a client certificate (and its file), or None."""
    if _CLIENT_NAME.match(user):
        return None
    return Problem("--client", f"{user!r} is not a usable role name (it becomes CN={user} and the file "
                               f"name client-<name>.crt)",
                   "use 1 to 63 letters, digits, '_', '.', '@' or '-', not starting with '.' or '-'")
