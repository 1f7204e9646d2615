{{/*
The preStop hook of switchoverOnStop: before the kubelet stops a group's primary (rolling
update, kubectl delete pod, drain, scale-down), hand its leadership to a streaming replica
with Patroni's own switchover (patronictl, POST /switchover on the leader's REST API with
the pod's TLS settings and REST credentials), so the group never waits for a failover.

Runs with the image's python3 (standard library only) and patronictl, both on PATH, as the
container's user, with the container's environment (PATRONI_NAME, PATRONI_CITUS_GROUP, the
DCS and REST API settings; PATRONICTL_CONFIG_FILE from the image). argv[1] is the time
budget in seconds: whatever happens, the hook returns within it, and the kubelet then
sends SIGTERM as usual. A member that is not the leader returns at once. The candidate is
a synchronous standby if there is one, else the running replica with the highest ordinal:
during a rolling update (highest ordinal first) those already run the new revision. A
refused switchover (a replica restarted a moment ago is not a synchronous standby yet) is
tried again until the budget ends. tests/integration/test_switchover_on_stop.py
runs this very command, taken from the rendered chart, against a real cluster.
*/}}
{{- define "citus-cluster.switchoverScript" -}}
import json
import os
import subprocess
import sys
import time

DEADLINE = time.monotonic() + float(sys.argv[1])
ME = os.environ["PATRONI_NAME"]
GROUP = ["--group", os.environ["PATRONI_CITUS_GROUP"]] if os.environ.get("PATRONI_CITUS_GROUP") else []


def say(message):
    line = "patroni-citus-k8s preStop: " + message
    print(line, flush=True)
    if os.getpid() != 1 and os.environ.get("KUBERNETES_SERVICE_HOST"):
        try:  # PID 1 is Patroni: its stderr is what kubectl logs shows
            with open("/proc/1/fd/2", "w") as log:
                log.write(line + "\n")
        except OSError:
            pass


def patronictl(*args):
    left = DEADLINE - time.monotonic()
    if left < 1:
        raise TimeoutError
    return subprocess.run(["patronictl", *args], capture_output=True, text=True, timeout=left)


def members():
    out = patronictl("list", *GROUP, "--extended", "-f", "json")
    return json.loads(out.stdout) if out.returncode == 0 else None


def tags(row):
    value = row.get("Tags") or {}
    return json.loads(value) if isinstance(value, str) else value


def ordinal(name):
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def candidates(rows):
    """Replicas Patroni may promote, best first: synchronous standbys when there are any
    (with synchronous replication, which Citus turns on, Patroni promotes only those), then
    the highest ordinal. The DCS shows a replica as running until its next HA cycle reports
    streaming; Patroni itself refuses a candidate that is unhealthy or lags too far."""
    ready = [r for r in rows if r["Member"] != ME and r["State"] in ("streaming", "running")
             and not tags(r).get("nofailover")]
    sync = [r for r in ready if r["Role"] in ("Sync Standby", "Quorum Standby")]
    return sorted((r["Member"] for r in sync or ready), key=ordinal, reverse=True)


def hand_over(rows):
    refused = None
    while True:
        names = candidates(rows)
        if not names:
            say("no running replica to hand over to: stopping as the primary")
            return 0
        if refused is None:
            say("handing leadership to " + names[0] + " before stopping")
        out = patronictl("switchover", *GROUP, "--leader", ME, "--candidate", names[0], "--force")
        if out.returncode == 0 and "failed, details" not in out.stdout:
            break
        # Refused for now (say a new replica is not a synchronous standby yet): try again.
        lines = [line for line in (out.stdout + out.stderr).splitlines() if line.strip() and " - INFO - " not in line]
        if refused is None:
            say("switchover refused, trying again until the time budget ends: " + (lines or ["no output"])[-1])
        refused = True
        time.sleep(2)
        rows = members() or rows
        if not any(r["Member"] == ME and r["Role"] == "Leader" for r in rows):
            break
    while True:
        leaders = [r["Member"] for r in members() or [] if r["Role"] == "Leader" and r["State"] == "running"]
        if leaders and leaders[0] != ME:
            say(leaders[0] + " leads now: stopping as a replica")
            return 0
        time.sleep(1)


def main():
    try:
        rows = members()
        if rows is None:
            say("cannot list the members: stopping without a switchover")
            return 1
        if not any(r["Member"] == ME and r["Role"] == "Leader" for r in rows):
            return 0
        return hand_over(rows)
    except (TimeoutError, subprocess.TimeoutExpired):
        say("no hand-over within " + sys.argv[1] + " s: stopping as the primary")
        return 1


sys.exit(main())
{{- end -}}
