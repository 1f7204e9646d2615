"""The image with a read-only root filesystem, mounted as the chart's pods mount it.

The chart (helm/citus-cluster) turns `readOnlyRootFilesystem` on and puts PCK_RUNTIME_DIR,
the socket directory, /tmp and /dev/shm on memory-backed emptyDirs. This runs the image
that way with `docker run --read-only`, two members of one group, and everything taken
from the chart's rendered StatefulSet: the user, group and fsGroup, the dropped
capabilities, the volume mounts and their tmpfs sizes, the pod's environment and the
readiness probe command. Only the DCS differs (etcd in a container instead of the
Kubernetes API), and the connect addresses are given instead of derived.

Docker's own `--tmpfs` would not do: runc gives a tmpfs the mode of the image's directory
under it (0700 for /run/patroni-citus-k8s), while the kubelet bind-mounts a tmpfs it made
as root:<fsGroup>, drwxrwsrwt. So each memory volume is a tmpfs mounted on the host the
kubelet's way and bind-mounted into the container; the Secret is a directory of
root:<fsGroup> 0640 files, the data volume a fresh root:<fsGroup> 2775 directory.

Checks: both members run (leader and streaming replica), the chart's readiness probe
passes; the staged keys, pgpass and patroni.yml are in the tmpfs, and the tmpfs mount
point is untouched (the entrypoint never chmods a directory it does not own); TLS at
verify-full by name, replication encrypted, and PostgreSQL and the REST API answer on
IPv6 (::1) with the chart's default listen address; the chart's preStop command hands
leadership over inside the image and logs it to the container log; the root filesystem
refuses a write and `docker diff` shows nothing but the mount points the engine created;
no process logged a write refused by the read-only filesystem.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

import pytest
import yaml

from tests.container import harness
from tests.container.harness import CERT_DIR, RUNTIME_DIR, run, wait_for

pytestmark = pytest.mark.container

support = pytest.importorskip("tests.helm.support", reason="the chart is rendered with helm-python-sdk")
if support.helm is None:
    pytest.skip(support.HELM_MISSING, allow_module_level=True)

RELEASE, NAMESPACE = "citusdemo", "default"
# verify-full, one group of two members: the chart's own values but for the size.
CHART_SETS = "ssl.enabled=true,ssl.mode=verify-full,workers.groups=0,coordinator.replicas=2"
PASSWORD = "read-only-suite-pw"
MEMBERS = [f"{RELEASE}-0-0", f"{RELEASE}-0-1"]
UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "": 1}


def quantity_bytes(text: str) -> int:
    """A Kubernetes quantity (16Mi, 1Gi, 500M) in bytes."""
    match = re.fullmatch(r"([0-9]+)(Ki|Mi|Gi|Ti|k|M|G|)", text)
    assert match, f"unexpected quantity {text!r}"
    return int(match.group(1)) * UNITS[match.group(2)]


@dataclass
class ReadOnlyPods:
    """What the fixture started; every name carries `prefix`."""

    docker: str
    prefix: str
    workdir: str
    sts: dict
    citus: bool
    containers: dict = field(default_factory=dict)  # member -> container name
    mounts: dict = field(default_factory=dict)  # mountPath -> the emptyDir's host tmpfs (per member)
    tmpfs: list = field(default_factory=list)  # host tmpfs mount points, unmounted at the end

    def exec(self, member: str, *cmd: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
        env_args = [arg for key, value in (env or {}).items() for arg in ("-e", f"{key}={value}")]
        return run([self.docker, "exec", *env_args, self.containers[member], *cmd], check=check, timeout=60)

    def psql(self, member: str, host: str, sql: str) -> str:
        conninfo = (f"host={host} port=5432 user=postgres dbname=postgres sslmode=verify-full "
                    f"sslrootcert={CERT_DIR}/ca.crt connect_timeout=10")
        return self.exec(member, "psql", conninfo, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql,
                         env={"PGPASSWORD": PASSWORD}).stdout


def fqdn(member: str) -> str:
    return f"{member}.{RELEASE}.{NAMESPACE}.svc.cluster.local"


def _kubelet_tmpfs(path: str, size: int, fs_group: int) -> None:
    """A memory emptyDir as the kubelet makes it: tmpfs of the size limit, then fsGroup's chown and g+rws."""
    os.makedirs(path)
    run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path])
    os.chown(path, 0, fs_group)
    os.chmod(path, 0o3777)


def _secret_dir(path: str, certs: str, fs_group: int, volume: dict) -> None:
    """The TLS Secret as the kubelet presents the chart's projected volume with defaultMode 0600 and fsGroup:
    root:<fsGroup> 0640, each item under its path; an optional item (the CRL) only when the Secret has it."""
    os.makedirs(path)
    os.chmod(path, 0o755)
    items = [(item["path"], source["secret"].get("optional", False))
             for source in volume["projected"]["sources"] for item in source["secret"]["items"]]
    for name, optional in items:
        if optional and not os.path.exists(os.path.join(certs, name)):
            continue
        shutil.copyfile(os.path.join(certs, name), os.path.join(path, name))
        os.chown(os.path.join(path, name), 0, fs_group)
        os.chmod(os.path.join(path, name), 0o640)


def _volume_args(pods: ReadOnlyPods, member: str, certs: str) -> list[str]:
    """--mount arguments for every volumeMount of the chart's container, prepared on the host."""
    spec = pods.sts["spec"]["template"]["spec"]
    fs_group = spec["securityContext"]["fsGroup"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    claims = {t["metadata"]["name"] for t in pods.sts["spec"]["volumeClaimTemplates"]}
    args: list[str] = []
    for number, mount in enumerate(support.container(pods.sts)["volumeMounts"]):
        host = os.path.join(pods.workdir, member, f"{number}-{mount['name']}")
        volume = volumes.get(mount["name"], {})
        if mount["name"] in claims:  # a fresh PersistentVolume after the kubelet's fsGroup pass
            os.makedirs(host)
            os.chown(host, 0, fs_group)
            os.chmod(host, 0o2775)
        elif "emptyDir" in volume:
            assert volume["emptyDir"].get("medium") == "Memory", mount
            limit = volume["emptyDir"].get("sizeLimit")
            _kubelet_tmpfs(host, quantity_bytes(limit) if limit else 2**30, fs_group)
            pods.tmpfs.append(host)
            pods.mounts.setdefault(mount["mountPath"], []).append(host)
        elif "projected" in volume:
            _secret_dir(host, certs, fs_group, volume)
        else:
            raise AssertionError(f"the suite does not know how to mount {volume}")
        readonly = ",readonly" if mount.get("readOnly") else ""
        args += ["--mount", f"type=bind,source={host},target={mount['mountPath']}{readonly}"]
    return args


def _security_args(sts: dict) -> list[str]:
    """The pod and container security contexts, as docker run options."""
    pod = sts["spec"]["template"]["spec"]["securityContext"]
    ctx = support.container(sts)["securityContext"]
    args = ["--user", f"{pod['runAsUser']}:{pod['runAsGroup']}", "--group-add", str(pod["fsGroup"])]
    if ctx.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    if ctx.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    args += [arg for cap in ctx.get("capabilities", {}).get("drop", []) for arg in ("--cap-drop", cap)]
    return args


def _env_args(sts: dict, ordinal: int, citus: bool) -> list[str]:
    """The pod's environment from the chart, with etcd as the DCS and the connect addresses given."""
    env = support.pod_environment(sts, ordinal, NAMESPACE, secret_value=PASSWORD)
    name = env["PATRONI_NAME"]
    for key in [k for k in env if k.startswith(("PATRONI_KUBERNETES_", "KUBERNETES_"))
                or (k.startswith("PATRONI_CITUS_") and not citus)]:
        del env[key]
    env.update({"PATRONI_ETCD3_HOSTS": "etcd:2379",
                "PATRONI_POSTGRESQL_CONNECT_ADDRESS": f"{fqdn(name)}:5432",
                "PATRONI_RESTAPI_CONNECT_ADDRESS": f"{fqdn(name)}:8008"})
    return [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]


def _generate_certs(workdir: str) -> str:
    certs = os.path.join(workdir, "certs")
    script = os.path.join(os.path.dirname(sys.executable), "patroni-citus-k8s")
    cli = [script] if os.path.exists(script) else [sys.executable, "-m", "entrypoint"]
    run([*cli, "certs", "generate", "--cluster", RELEASE, "--namespace", NAMESPACE, "--groups", "1",
         "--out-dir", certs], env={"PYTHONPATH": harness.REPO})
    return certs


def _start(pods: ReadOnlyPods, image: str, network: str) -> None:
    certs = _generate_certs(pods.workdir)
    etcd = f"{pods.prefix}-etcd"
    run([pods.docker, "run", "-d", "--name", etcd, "--network", network, "--network-alias", "etcd",
         os.environ.get("PCK_ETCD_IMAGE", "quay.io/coreos/etcd:v3.5.21"), "etcd", "--name=etcd",
         "--data-dir=/tmp/etcd", "--listen-client-urls=http://0.0.0.0:2379",
         "--advertise-client-urls=http://etcd:2379", "--listen-peer-urls=http://0.0.0.0:2380",
         "--initial-advertise-peer-urls=http://etcd:2380", "--initial-cluster=etcd=http://etcd:2380"])
    pods.containers["etcd"] = etcd
    for ordinal, member in enumerate(MEMBERS):
        name = f"{pods.prefix}-{member}"
        # The loopback's IPv6 address, which Docker disables and a pod has: the IPv6 check uses it.
        run([pods.docker, "run", "-d", "--name", name, "--hostname", member, "--network", network,
             "--network-alias", fqdn(member), "--sysctl", "net.ipv6.conf.lo.disable_ipv6=0",
             *_security_args(pods.sts), *_volume_args(pods, member, certs),
             *_env_args(pods.sts, ordinal, pods.citus), image])
        pods.containers[member] = name


def _rows(pods: ReadOnlyPods) -> list[dict] | None:
    rows = json.loads(pods.exec(MEMBERS[0], "patronictl", "list", "-f", "json").stdout)
    states = sorted((row["Role"], row["State"]) for row in rows)
    # Citus turns quorum-synchronous replication on, so the replica becomes a Quorum Standby there.
    return rows if len(states) == 2 and states[0] == ("Leader", "running") and \
        states[1][0] in ("Replica", "Sync Standby", "Quorum Standby") and states[1][1] == "streaming" else None


@pytest.fixture(scope="module")
def pods(docker: str, image: str, citus: bool):
    prefix = f"pckro{os.getpid()}"
    rendered = support.render(support.Case("read-only", RELEASE, NAMESPACE, sets=CHART_SETS))
    workdir = tempfile.mkdtemp(prefix="pck-read-only-")
    os.chmod(workdir, 0o755)
    network = f"{prefix}-net"
    started = ReadOnlyPods(docker=docker, prefix=prefix, workdir=workdir, citus=citus,
                           sts=rendered.get("StatefulSet", f"{RELEASE}-0"))
    run([docker, "network", "create", network])
    try:
        _start(started, image, network)
        wait_for("a leader and a streaming replica, read-only", lambda: _rows(started), timeout=240, interval=3)
        yield started
    except BaseException:
        for name in started.containers.values():
            print(run([docker, "logs", "--tail=40", name], check=False).stderr[-6000:])
        raise
    finally:
        for name in started.containers.values():
            run([docker, "rm", "-f", "-v", name], check=False)
        run([docker, "network", "rm", network], check=False)
        for path in started.tmpfs:
            run(["umount", path], check=False)
        shutil.rmtree(workdir, ignore_errors=True)
        left = [n for n in started.containers.values()
                if run([docker, "inspect", n], check=False).returncode == 0]
        assert not left, f"containers left behind: {left}"


def test_members_run_with_the_charts_security_context(pods: ReadOnlyPods):
    for member in MEMBERS:
        host = json.loads(run([pods.docker, "inspect", pods.containers[member]]).stdout)[0]["HostConfig"]
        assert host["ReadonlyRootfs"] is True
        assert host["CapDrop"] == ["ALL"]
        refused = pods.exec(member, "touch", "/var/lib/postgresql/probe", check=False)
        assert refused.returncode != 0 and "Read-only file system" in refused.stderr
        # The chart's own readiness probe command passes.
        pods.exec(member, *support.container(pods.sts)["readinessProbe"]["exec"]["command"])


def test_keys_pgpass_and_config_are_in_the_tmpfs(pods: ReadOnlyPods):
    for member in MEMBERS:
        table = pods.exec(member, "cat", "/proc/mounts").stdout.splitlines()
        mounts = {line.split()[1]: line.split()[2] for line in table}
        for path in pods.mounts:  # every memory volume of the chart, where the container sees it
            real = pods.exec(member, "readlink", "-f", path).stdout.strip()
            assert mounts.get(real) == "tmpfs", (path, real, mounts.get(real))
        config = yaml.safe_load(pods.exec(member, "cat", f"{RUNTIME_DIR}/patroni.yml").stdout)
        assert config["postgresql"]["pgpass"].startswith(RUNTIME_DIR + "/")
        assert config["postgresql"]["parameters"]["ssl_key_file"] == f"{RUNTIME_DIR}/tls/server.key"
        # tls is a link to the current staged generation (atomic switch on rotation): -L judges what it points at.
        assert pods.exec(member, "test", "-L", f"{RUNTIME_DIR}/tls", check=False).returncode == 0
        stat = pods.exec(member, "stat", "-L", "-c", "%n %a %U %G", RUNTIME_DIR, f"{RUNTIME_DIR}/patroni.yml",
                         f"{RUNTIME_DIR}/tls", f"{RUNTIME_DIR}/tls/server.key").stdout.splitlines()
        assert stat == [f"{RUNTIME_DIR} 3777 root postgres",  # the kubelet's, untouched
                        f"{RUNTIME_DIR}/patroni.yml 600 postgres postgres",
                        f"{RUNTIME_DIR}/tls 755 postgres postgres",
                        f"{RUNTIME_DIR}/tls/server.key 600 postgres postgres"]
    # The replica cloned the leader (pg_basebackup) with the passwords in the pgpass Patroni wrote there.
    replica = next(row["Member"] for row in _rows(pods) if row["Role"] != "Leader")
    assert pods.exec(replica, "stat", "-c", "%a %U", f"{RUNTIME_DIR}/pgpass").stdout.split() == ["600", "postgres"]
    # And these are tmpfs mounts on the host too, as the kubelet's emptyDirs are: nothing on a disk.
    for tmpfs in pods.mounts[RUNTIME_DIR]:
        assert os.path.exists(os.path.join(tmpfs, "tls", "server.key"))
        assert run(["findmnt", "-n", "-o", "FSTYPE", tmpfs]).stdout.strip() == "tmpfs"


def test_tls_by_name_and_encrypted_replication(pods: ReadOnlyPods):
    for member, other in ((MEMBERS[0], MEMBERS[1]), (MEMBERS[1], MEMBERS[0])):
        out = pods.psql(other, fqdn(member), "SHOW ssl; SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid();")
        assert out.split() == ["on", "t"]
    leader = next(row["Member"] for row in _rows(pods) if row["Role"] == "Leader")
    out = pods.psql(leader, fqdn(leader), "SELECT r.application_name, s.ssl FROM pg_stat_replication r "
                                          "JOIN pg_stat_ssl s USING (pid)")
    assert out.split() == [f"{next(m for m in MEMBERS if m != leader)}|t"]


def test_default_listen_address_serves_ipv6(pods: ReadOnlyPods):
    """listenAddress "*": PostgreSQL and the REST API answer on ::1 (the certificate names it)."""
    member = MEMBERS[0]
    assert pods.psql(member, "::1", "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").split() == ["t"]
    script = ("import ssl, urllib.request\n"
              f"ctx = ssl.create_default_context(cafile='{CERT_DIR}/ca.crt')\n"
              "print(urllib.request.urlopen('https://[::1]:8008/liveness', context=ctx, timeout=10).status)\n")
    assert pods.exec(member, "python3", "-c", script).stdout.strip() == "200"


def test_the_prestop_hand_over_runs_in_the_image(pods: ReadOnlyPods):
    """The chart's preStop command, in the read-only container as the kubelet runs it (the
    container's user and environment; KUBERNETES_SERVICE_HOST as in every pod): on the
    replica it does nothing, on the primary it hands over, and says so in the container log."""
    command = support.container(pods.sts)["lifecycle"]["preStop"]["exec"]["command"]
    rows = _rows(pods)
    leader = next(row["Member"] for row in rows if row["Role"] == "Leader")
    replica = next(row["Member"] for row in rows if row["Role"] != "Leader")
    in_pod = {"KUBERNETES_SERVICE_HOST": "10.96.0.1"}
    assert pods.exec(replica, *command, env=in_pod).stdout == ""
    out = pods.exec(leader, *command, env=in_pod).stdout
    assert f"{replica} leads now" in out, out
    new_leader = wait_for("the replica to lead", lambda: _rows(pods), timeout=60)
    assert next(row["Member"] for row in new_leader if row["Role"] == "Leader") == replica
    logs = run([pods.docker, "logs", pods.containers[leader]])
    assert f"patroni-citus-k8s preStop: {replica} leads now" in logs.stdout + logs.stderr


def test_nothing_is_written_to_the_root_filesystem(pods: ReadOnlyPods):
    """`docker diff` lists only the mount points the engine made for the bind mounts (and their parents)."""
    targets = {m["mountPath"] for m in support.container(pods.sts)["volumeMounts"]}
    parents = {os.path.dirname(p) for t in targets for p in _ancestors(t)}
    for member in MEMBERS:
        changes = run([pods.docker, "diff", pods.containers[member]]).stdout.splitlines()
        unexpected = [c for c in changes if not ((c.startswith("A ") and c[2:] in targets)
                                                 or (c.startswith("C ") and c[2:] in parents))]
        assert unexpected == [], f"{member} wrote to its root filesystem: {unexpected}"
        logs = run([pods.docker, "logs", pods.containers[member]])
        assert "Read-only file system" not in logs.stdout + logs.stderr


def _ancestors(path: str) -> list[str]:
    out = []
    while path not in ("/", ""):
        out.append(path)
        path = os.path.dirname(path)
    return out
