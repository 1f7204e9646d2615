"""What the chart deploys, asserted on the parsed objects of each install case."""

from __future__ import annotations

import json

import yaml

from tests.helm.support import (CERT_DIR, CHART_DIR, CSI_DIR, Case, Rendered, container, decode, env_of, group_numbers,
                                listen, mounted_files, render, secret_items, selects, volume_named)

SSL_ENV = ("PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY", "PCK_CLIENT_CERT_AUTH", "PCK_TLS_MIN_VERSION")


def _values(rendered: Rendered) -> dict:
    return rendered.case.user_values()


def _expected_groups(rendered: Rendered) -> list[int]:
    workers = _values(rendered).get("workers", {}).get("groups", 2)
    return list(range(workers + 1))


def test_one_statefulset_per_group_under_the_headless_service(rendered: Rendered) -> None:
    r = rendered.case.release
    groups = _expected_groups(rendered)
    assert group_numbers(rendered) == groups
    assert sorted(rendered.names("StatefulSet")) == sorted(f"{r}-{g}" for g in groups)
    for sts in rendered.statefulsets:
        g = int(sts["metadata"]["labels"]["citus-group"])
        assert sts["spec"]["serviceName"] == r
        values = _values(rendered)
        role = "coordinator" if g == 0 else "workers"
        assert sts["spec"]["replicas"] == values.get(role, {}).get("replicas", 3 if g == 0 else 2)
        labels = sts["spec"]["template"]["metadata"]["labels"]
        assert labels["citus-group"] == str(g)
        assert labels["citus-type"] == ("coordinator" if g == 0 else "worker")
        assert selects(sts["spec"]["selector"]["matchLabels"], labels)
        # Patroni adds the role label to pods; a selector with it would orphan pods.
        assert "role" not in sts["spec"]["selector"]["matchLabels"]


def test_headless_service_publishes_every_pod_even_before_it_is_ready(rendered: Rendered) -> None:
    r = rendered.case.release
    headless = rendered.get("Service", r)
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    for sts in rendered.statefulsets:
        assert selects(headless["spec"]["selector"], sts["spec"]["template"]["metadata"]["labels"])
    # Kept out of Patroni's label selector, so its Endpoints do not land in Patroni's watch.
    assert "application" not in headless["metadata"]["labels"]


def test_services_patronis_kubernetes_dcs_needs(rendered: Rendered) -> None:
    r = rendered.case.release
    for g in _expected_groups(rendered):
        leader = rendered.get("Service", f"{r}-{g}")
        # No selector: Patroni writes the Endpoints of the same name, with a port of the same name.
        assert "selector" not in leader["spec"]
        assert [p["name"] for p in leader["spec"]["ports"]] == ["postgresql"]
        config = rendered.get("Service", f"{r}-{g}-config")
        assert config["spec"]["clusterIP"] == "None" and "selector" not in config["spec"]
        for svc in (leader, config):
            assert svc["metadata"]["labels"]["citus-group"] == str(g)
    sts_env = env_of(rendered.statefulsets[0])
    ports = json.loads(sts_env["PATRONI_KUBERNETES_PORTS"]["value"])
    assert ports == [{"name": "postgresql", "port": 5432}]


def test_workers_service_selects_worker_primaries_only(rendered: Rendered) -> None:
    r = rendered.case.release
    if len(_expected_groups(rendered)) == 1:
        assert f"{r}-workers" not in rendered.names("Service")
        return
    workers = rendered.get("Service", f"{r}-workers")
    selector = workers["spec"]["selector"]
    assert selector["role"] == "primary"  # the label value Patroni 4 gives the leader pod
    for sts in rendered.statefulsets:
        labels = dict(sts["spec"]["template"]["metadata"]["labels"], role="primary")
        is_worker = labels["citus-group"] != "0"
        assert selects(selector, labels) == is_worker
        assert not selects(selector, dict(labels, role="replica"))


def test_patroni_identity_and_dcs_environment(rendered: Rendered) -> None:
    r, ns = rendered.case.release, rendered.case.namespace
    domain = _values(rendered).get("clusterDomain", "cluster.local")
    for sts in rendered.statefulsets:
        env = env_of(sts)
        g = sts["metadata"]["labels"]["citus-group"]
        assert env["PATRONI_SCOPE"]["value"] == r
        assert env["PATRONI_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
        assert env["PATRONI_CITUS_GROUP"]["value"] == g
        assert env["PATRONI_CITUS_DATABASE"]["value"] == "citus"
        assert env["PATRONI_KUBERNETES_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
        assert env["PATRONI_KUBERNETES_POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
        assert env["PATRONI_KUBERNETES_USE_ENDPOINTS"]["value"] == "true"
        # Off unless the Role in `default` is asked for (rbac.readApiServerEndpoints).
        assert env["PATRONI_KUBERNETES_BYPASS_API_SERVICE"]["value"] == "false"
        assert env["PATRONI_POSTGRESQL_LISTEN"]["value"] == listen(rendered, 5432)
        assert env["PATRONI_RESTAPI_LISTEN"]["value"] == listen(rendered, 8008)
        assert env["PCK_HEADLESS_SERVICE"]["value"] == r
        assert env["PCK_CLUSTER_DOMAIN"]["value"] == domain
        # The entrypoint derives both connect addresses from the pod's stable name.
        assert "PATRONI_POSTGRESQL_CONNECT_ADDRESS" not in env
        assert "PATRONI_RESTAPI_CONNECT_ADDRESS" not in env
        # The data directory is inside the persistent volume, one level down so initdb
        # can create it with mode 0700.
        mount = [m for m in container(sts)["volumeMounts"] if m["name"] == "pgdata"][0]["mountPath"]
        assert env["PATRONI_POSTGRESQL_DATA_DIR"]["value"].startswith(mount + "/")
        claim = sts["spec"]["volumeClaimTemplates"][0]
        assert claim["metadata"]["name"] == "pgdata"
        assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"


def test_patroni_label_selector_sees_every_group(rendered: Rendered) -> None:
    """Patroni lists members by PATRONI_KUBERNETES_LABELS plus its scope label and adds
    citus-group only to what it writes; with citus-group in the selector the coordinator
    would never see the workers it must register."""
    r = rendered.case.release
    for sts in rendered.statefulsets:
        selector = json.loads(env_of(sts)["PATRONI_KUBERNETES_LABELS"]["value"])
        assert selector == {"application": "patroni", "cluster-name": r}
        for other in rendered.statefulsets:
            assert selects(selector, other["spec"]["template"]["metadata"]["labels"])


def test_credentials_come_from_the_secret(rendered: Rendered) -> None:
    r = rendered.case.release
    secret = rendered.get("Secret", f"{r}-credentials")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    for key in ("superuser-password", "replication-password", "restapi-password"):
        assert len(decode(secret, key)) == 32
    for sts in rendered.statefulsets:
        env = env_of(sts)
        assert env["PATRONI_SUPERUSER_USERNAME"]["value"] == "postgres"
        assert env["PATRONI_REPLICATION_USERNAME"]["value"] == "replicator"
        assert env["PATRONI_RESTAPI_USERNAME"]["value"] == "patroni"
        for var, key in (("PATRONI_SUPERUSER_PASSWORD", "superuser-password"),
                         ("PATRONI_REPLICATION_PASSWORD", "replication-password"),
                         ("PATRONI_RESTAPI_PASSWORD", "restapi-password")):
            assert env[var]["valueFrom"]["secretKeyRef"] == {"name": f"{r}-credentials", "key": key}


def test_tls_secret_mounted_read_only_0600_with_the_seeds_paths(rendered: Rendered) -> None:
    ssl = _values(rendered).get("ssl", {})
    for sts in rendered.statefulsets:
        env = env_of(sts)
        mounts = {m["mountPath"]: m for m in container(sts)["volumeMounts"]}
        if not ssl.get("enabled"):
            assert CERT_DIR not in mounts
            assert env["PGSSLMODE"]["value"] == ssl.get("mode", "prefer")
            assert not set(SSL_ENV) & set(env)
            continue
        mount = mounts[CERT_DIR]
        assert mount["readOnly"] is True
        if ssl.get("certManager", {}).get("csi", {}).get("enabled"):
            # Each pod's own files come from the CSI driver (tests/helm/test_chart_revocation.py); the
            # certificate directory holds the Secret's CRL only, when it has one.
            assert mounted_files(sts, CERT_DIR, optional=False) == set()
            assert mounted_files(sts, CERT_DIR) == {"ca.crl"}
            continue
        volume = volume_named(sts, mount["name"])["projected"]
        assert {i["secret"] for i in secret_items(sts, CERT_DIR)} == {f"{rendered.case.release}-ssl-certs"}
        assert volume["defaultMode"] == 384 == 0o600
        assert mounted_files(sts, CERT_DIR, optional=False) == {"ca.crt", "server.crt", "server.key"}
        # The CRL, when the Secret has one: an optional source of its own, so a Secret without it still mounts.
        (crl,) = [i for i in secret_items(sts, CERT_DIR) if i["optional"]]
        assert (crl["key"], crl["path"]) == ("ca.crl", "ca.crl")
        assert {k: env[k]["value"] for k in ("PGSSLMODE", "PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY")} == {
            "PGSSLMODE": ssl.get("mode", "verify-ca"),
            "PGSSLROOTCERT": "/etc/ssl/certs/postgresql/ca.crt",
            "PGSSLCERT": "/etc/ssl/certs/postgresql/server.crt",
            "PGSSLKEY": "/etc/ssl/certs/postgresql/server.key",
        }
        assert env["PCK_CLIENT_CERT_AUTH"]["value"] == ("true" if ssl.get("clientAuth") else "false")
        assert env["PCK_TLS_MIN_VERSION"]["value"] == ssl.get("minProtocolVersion", "TLSv1.2")
        # fsGroup gives the postgres group read access to the 0600 files of the Secret.
        assert sts["spec"]["template"]["spec"]["securityContext"]["fsGroup"] == 999


def test_cert_manager_key_names_are_mapped_to_the_seeds_file_names(rendered_cases: dict[str, Rendered]) -> None:
    rendered = rendered_cases["cert-manager"]
    for sts in rendered.statefulsets:
        assert {i["key"]: i["path"] for i in secret_items(sts, CERT_DIR)} == {
            "ca.crt": "ca.crt", "tls.crt": "server.crt", "tls.key": "server.key", "ca.crl": "ca.crl"}
    seed = rendered_cases["seed"]
    for sts in seed.statefulsets:
        assert {i["key"]: i["path"] for i in secret_items(sts, CERT_DIR)} == {
            "ca.crt": "ca.crt", "server.crt": "server.crt", "server.key": "server.key", "ca.crl": "ca.crl"}


def test_cert_manager_certificate_writes_the_mounted_secret(rendered_cases: dict[str, Rendered]) -> None:
    rendered = rendered_cases["cert-manager"]
    (cert,) = rendered.of_kind("Certificate")
    spec = cert["spec"]
    assert cert["apiVersion"] == "cert-manager.io/v1"
    assert spec["secretName"] == "orders-ssl-certs"
    assert spec["issuerRef"] == {"name": "internal-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
    assert "*.orders.prod.svc.cluster.local" in spec["dnsNames"]
    assert {"orders-0", "orders-0.prod.svc", "orders-workers.prod.svc.cluster.local"} <= set(spec["dnsNames"])
    assert spec["ipAddresses"] == ["127.0.0.1", "::1"]
    # Members present this certificate as clients under mutual TLS.
    assert {"server auth", "client auth"} <= set(spec["usages"])
    for other in ("defaults", "seed", "verify-full-mtls"):
        assert not rendered_cases[other].of_kind("Certificate")


def test_exec_probes_work_with_https_and_client_certificates(rendered: Rendered) -> None:
    for sts in rendered.statefulsets:
        c = container(sts)
        assert c["readinessProbe"]["exec"]["command"] == ["patroni-citus-k8s", "probe", "readiness"]
        assert c["livenessProbe"]["exec"]["command"] == ["patroni-citus-k8s", "probe", "liveness"]
        for probe in (c["readinessProbe"], c["livenessProbe"]):
            assert "httpGet" not in probe
            # The command waits up to 5 s for the REST API, after Python starts.
            assert probe["timeoutSeconds"] > 5


def test_pods_run_non_root_without_privileges(rendered: Rendered) -> None:
    for sts in rendered.statefulsets:
        pod = sts["spec"]["template"]["spec"]["securityContext"]
        assert pod["runAsNonRoot"] is True
        assert (pod["runAsUser"], pod["runAsGroup"], pod["fsGroup"]) == (999, 999, 999)
        c = container(sts)["securityContext"]
        assert c["allowPrivilegeEscalation"] is False
        assert c["capabilities"]["drop"] == ["ALL"]
        assert "privileged" not in c or c["privileged"] is False
        assert c["readOnlyRootFilesystem"] is True


# Where the container writes outside the data volume, and the tmpfs size of each.
MEMORY_MOUNTS = {"/run/patroni-citus-k8s": "16Mi", "/var/run/postgresql": "1Mi", "/tmp": "64Mi", "/dev/shm": "1Gi"}


def test_keys_pgpass_and_config_stay_in_memory(rendered: Rendered) -> None:
    """PCK_RUNTIME_DIR (staged keys, pgpass, patroni.yml), the sockets, /tmp and /dev/shm are
    tmpfs emptyDirs with a size limit; with the data volume they are all the container writes."""
    for sts in rendered.statefulsets:
        env = env_of(sts)
        assert env["PCK_RUNTIME_DIR"]["value"] == "/run/patroni-citus-k8s"
        mounts = {m["mountPath"]: m["name"] for m in container(sts)["volumeMounts"]}
        for path, size in MEMORY_MOUNTS.items():
            assert volume_named(sts, mounts[path])["emptyDir"] == {"medium": "Memory", "sizeLimit": size}, path
        volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
        claims = {t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]}
        # Everything mounted is in memory, the data volume claim, or read-only (the TLS Secret).
        read_only = {m["mountPath"] for m in container(sts)["volumeMounts"] if m.get("readOnly")}
        other = {path for path, name in mounts.items()
                 if name not in claims and path not in read_only and "emptyDir" not in volumes[name]}
        assert other == set()
        assert {path for path, name in mounts.items() if name in volumes and "emptyDir" in volumes[name]} == \
            set(MEMORY_MOUNTS)
        assert env["PSQL_HISTORY"]["value"].startswith("/tmp/")


def test_memory_volume_sizes_are_values() -> None:
    custom = render(Case("sizes", "citusdemo", "default", sets=(
        "memoryVolumes.runtimeDirSizeLimit=4Mi,memoryVolumes.socketDirSizeLimit=2Mi,"
        "memoryVolumes.tmpSizeLimit=32Mi,memoryVolumes.shmSizeLimit=")))
    for sts in custom.statefulsets:
        sizes = {v["name"]: v["emptyDir"].get("sizeLimit") for v in sts["spec"]["template"]["spec"]["volumes"]
                 if "emptyDir" in v}
        assert sizes == {"runtime": "4Mi", "sockets": "2Mi", "tmp": "32Mi", "shm": None}
        assert volume_named(sts, "shm")["emptyDir"] == {"medium": "Memory"}


def test_members_of_a_group_spread_over_nodes_and_survive_drains(rendered: Rendered) -> None:
    r = rendered.case.release
    for sts in rendered.statefulsets:
        g = sts["metadata"]["labels"]["citus-group"]
        term = sts["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
            "preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
        assert term["topologyKey"] == "kubernetes.io/hostname"
        assert term["labelSelector"]["matchLabels"] == sts["spec"]["selector"]["matchLabels"]
        pdb = rendered.get("PodDisruptionBudget", f"{r}-{g}")
        assert pdb["spec"]["selector"]["matchLabels"] == sts["spec"]["selector"]["matchLabels"]
        assert pdb["spec"]["maxUnavailable"] == 1


def test_rbac_grants_what_patroni_uses_and_nothing_more(rendered: Rendered) -> None:
    r, ns = rendered.case.release, rendered.case.namespace
    role = rendered.get("Role", r)
    rules = {res: set(rule["verbs"]) for rule in role["rules"] for res in rule["resources"]}
    assert rules == {
        "endpoints": {"get", "list", "watch", "create", "patch", "update"},
        "pods": {"get", "list", "watch", "patch", "update"},
    }
    assert all(rule["apiGroups"] == [""] for rule in role["rules"])
    binding = rendered.get("RoleBinding", r)
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": r}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": r, "namespace": ns}]
    for sts in rendered.statefulsets:
        assert sts["spec"]["template"]["spec"]["serviceAccountName"] == r
    # Nothing outside the release's namespace: a namespace admin can install it.
    for obj in rendered.objects:
        assert obj["metadata"].get("namespace", ns) == ns, obj["metadata"]
    assert not rendered.of_kind("ClusterRole") and not rendered.of_kind("ClusterRoleBinding")


def test_api_server_bypass_is_opt_in_and_follows_its_role() -> None:
    """rbac.readApiServerEndpoints=true: get on the one `kubernetes` Endpoints in `default`,
    nothing else, and PATRONI_KUBERNETES_BYPASS_API_SERVICE=true with it."""
    rendered = render(Case("bypass", "citusdemo", "db", sets="rbac.readApiServerEndpoints=true"))
    api_role = [o for o in rendered.of_kind("Role") if o["metadata"].get("namespace") == "default"]
    assert len(api_role) == 1
    assert api_role[0]["metadata"]["name"] == "db-citusdemo-patroni-api-endpoints"
    assert api_role[0]["rules"] == [{"apiGroups": [""], "resources": ["endpoints"],
                                     "resourceNames": ["kubernetes"], "verbs": ["get"]}]
    (binding,) = [o for o in rendered.of_kind("RoleBinding") if o["metadata"].get("namespace") == "default"]
    assert binding["roleRef"]["name"] == api_role[0]["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "citusdemo", "namespace": "db"}]
    for sts in rendered.statefulsets:
        assert env_of(sts)["PATRONI_KUBERNETES_BYPASS_API_SERVICE"]["value"] == "true"


def test_notes_print_the_seeds_verification_commands_for_this_release(rendered: Rendered) -> None:
    r, ns = rendered.case.release, rendered.case.namespace
    assert f"kubectl exec -it {r}-0-0 -n {ns} -- patronictl -c /run/patroni-citus-k8s/patroni.yml list" in rendered.notes
    ssl = _values(rendered).get("ssl", {})
    if ssl.get("enabled"):
        assert f"kubectl exec -it {r}-0-0 -n {ns} -- env | grep PGSSL" in rendered.notes
        tls_dir = CSI_DIR if ssl.get("certManager", {}).get("csi", {}).get("enabled") else CERT_DIR
        assert f"PGSSLROOTCERT={tls_dir}/ca.crt" in rendered.notes
        assert env_of(rendered.statefulsets[0])["PGSSLROOTCERT"]["value"] == f"{tls_dir}/ca.crt"


def _app_version() -> str:
    return str(yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())["appVersion"])


def test_image_is_the_entrypoint_image_started_by_its_own_pid_1(rendered: Rendered) -> None:
    # The seed sets image.tag=latest; otherwise the tag is the chart's appVersion.
    tag = str(_values(rendered).get("image", {}).get("tag") or _app_version())
    for sts in rendered.statefulsets:
        c = container(sts)
        assert c["image"] == f"patroni-citus-k8s:{tag}"
        assert c["imagePullPolicy"] == "IfNotPresent"
        # The image's ENTRYPOINT/CMD is `patroni-citus-k8s run`; overriding it would skip it.
        assert "command" not in c and "args" not in c
        assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"postgresql": 5432, "patroni": 8008}


def test_notes_say_the_image_must_be_preloaded_or_pushed(rendered: Rendered) -> None:
    image = container(rendered.statefulsets[0])["image"]
    assert f"Image: {image}. It is in no public registry" in rendered.notes
    assert f"docker build -f Dockerfile.citus -t {image} ." in rendered.notes


MEMBER_PORTS = [{"port": 5432, "protocol": "TCP"}, {"port": 8008, "protocol": "TCP"}]


def test_network_policy_members_on_5432_and_8008_clients_on_5432(rendered: Rendered) -> None:
    np = dict(yaml.safe_load((CHART_DIR / "values.yaml").read_text())["networkPolicy"],
              **_values(rendered).get("networkPolicy", {}))
    policies = rendered.of_kind("NetworkPolicy")
    if not np.get("enabled"):
        assert policies == []
        return
    pooler = _values(rendered).get("pooler", {}).get("enabled", False)
    assert len(policies) == (2 if pooler else 1)  # the pooler's pods get a policy of their own
    policy = rendered.get("NetworkPolicy", rendered.case.release)
    spec = policy["spec"]
    members = {"podSelector": {"matchLabels": {"application": "patroni", "cluster-name": rendered.case.release}}}
    # It applies to every member of every group, ingress and egress both.
    for sts in rendered.statefulsets:
        assert selects(spec["podSelector"]["matchLabels"], sts["spec"]["template"]["metadata"]["labels"])
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    members_in, clients_in, *extra_in = spec["ingress"]
    assert members_in == {"from": [members], "ports": MEMBER_PORTS}
    # Clients: PostgreSQL (and the extra client ports) only, never the REST API unless asked.
    assert clients_in["ports"] == [{"port": 5432, "protocol": "TCP"}] + np.get("extraClientPorts", [])
    assert clients_in.get("from", []) == np.get("clients", [])
    if pooler:  # the pooler and its setup Job reach PostgreSQL, whatever `clients` admits
        pooler_in, *extra_in = extra_in
        assert pooler_in["ports"] == [{"port": 5432, "protocol": "TCP"}]
    if _values(rendered).get("metrics", {}).get("enabled", False):  # the exporter probes both ports
        exporter_in, *extra_in = extra_in
        assert exporter_in["ports"] == MEMBER_PORTS
        exporter = rendered.get("Deployment", f"{rendered.case.release}-tls-metrics")
        assert selects(exporter_in["from"][0]["podSelector"]["matchLabels"],
                       exporter["spec"]["template"]["metadata"]["labels"])
    assert extra_in == np.get("extraIngress", [])
    members_out, dns_out, api_out, *extra_out = spec["egress"]
    assert members_out == {"to": [members], "ports": MEMBER_PORTS}
    assert dns_out["ports"] == np["dns"]["ports"] and dns_out.get("to", []) == np["dns"]["to"]
    assert api_out["ports"] == [{"port": p, "protocol": "TCP"} for p in np["apiServer"]["ports"]]
    assert api_out.get("to", []) == [{"ipBlock": {"cidr": c}} for c in np["apiServer"]["cidrs"]]
    assert extra_out == np.get("extraEgress", [])


def test_network_policy_defaults_work_on_any_cluster() -> None:
    """Enabled with nothing else: clients from anywhere on 5432, DNS and the API server at any address."""
    (policy,) = render(Case("np-defaults", "citusdemo", "default", sets="networkPolicy.enabled=true")).of_kind(
        "NetworkPolicy")
    members_in, clients_in = policy["spec"]["ingress"]
    assert clients_in == {"ports": [{"port": 5432, "protocol": "TCP"}]}
    members_out, dns_out, api_out = policy["spec"]["egress"]
    assert dns_out == {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
    assert api_out == {"ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}]}


def test_primaries_hand_over_before_they_stop(rendered: Rendered) -> None:
    """switchoverOnStop (on by default): a preStop hook, bounded by its timeout, inside the grace period."""
    for sts in rendered.statefulsets:
        spec = sts["spec"]["template"]["spec"]
        command = container(sts)["lifecycle"]["preStop"]["exec"]["command"]
        assert command[:2] == ["python3", "-c"] and command[3] == "30"
        compile(command[2], "preStop", "exec")  # the script is valid Python
        assert "patronictl" in command[2] and "switchover" in command[2]
        assert spec["terminationGracePeriodSeconds"] >= int(command[3]) + 10
        assert sts["spec"]["updateStrategy"] == {"type": "RollingUpdate"}


def test_hand_over_and_update_strategy_are_values() -> None:
    rendered = render(Case("no-hook", "citusdemo", "default",
                           sets="switchoverOnStop.enabled=false,updateStrategy=OnDelete,terminationGracePeriodSeconds=20"))
    for sts in rendered.statefulsets:
        assert "lifecycle" not in container(sts)
        assert sts["spec"]["updateStrategy"] == {"type": "OnDelete"}
    longer = render(Case("longer", "citusdemo", "default",
                         sets="switchoverOnStop.timeoutSeconds=90,terminationGracePeriodSeconds=120"))
    assert container(longer.statefulsets[0])["lifecycle"]["preStop"]["exec"]["command"][3] == "90"


def test_notes_warn_offline_renderers_about_generated_passwords() -> None:
    generated = render(Case("generated", "citusdemo", "default")).notes
    assert "give it credentials.existingSecret" in generated
    assert "give it credentials.existingSecret" not in render(
        Case("own", "citusdemo", "default", sets="credentials.existingSecret=pg-auth")).notes


def test_the_seeds_commands_meet_the_new_defaults(rendered_cases: dict[str, Rendered]) -> None:
    """The seed's install line, then its checks: `env | grep PGSSL`, `ls -la` of the certificate
    directory, an interactive `psql ... host=citusdemo-0`, `patronictl list` and `bash` in the pod,
    all with a read-only root filesystem, the memory volumes and the preStop hook in place."""
    seed = rendered_cases["seed"]
    for sts in seed.statefulsets:
        c = container(sts)
        env = env_of(sts)
        assert c["image"] == "patroni-citus-k8s:latest"
        assert {k: env[k]["value"] for k in ("PGSSLMODE", "PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY")} == {
            "PGSSLMODE": "verify-ca", "PGSSLROOTCERT": f"{CERT_DIR}/ca.crt",
            "PGSSLCERT": f"{CERT_DIR}/server.crt", "PGSSLKEY": f"{CERT_DIR}/server.key"}
        assert mounted_files(sts, CERT_DIR, optional=False) == {"ca.crt", "server.crt", "server.key"}
        assert volume_named(sts, "ssl-certs")["projected"]["defaultMode"] == 384  # the seed's troubleshooting grep
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        # psql saves its history to /tmp, a memory volume; PATRONICTL_CONFIG_FILE (the image's)
        # points into the runtime memory volume, where `run` writes patroni.yml.
        assert env["PSQL_HISTORY"]["value"].startswith("/tmp/")
        assert {m["mountPath"] for m in c["volumeMounts"]} >= {"/tmp", "/run/patroni-citus-k8s"}
        assert "lifecycle" in c
    # host=citusdemo-0 is the coordinator group's primary Service on 5432; no NetworkPolicy by default.
    assert [p["port"] for p in seed.get("Service", "citusdemo-0")["spec"]["ports"]] == [5432]
    assert not seed.of_kind("NetworkPolicy")
