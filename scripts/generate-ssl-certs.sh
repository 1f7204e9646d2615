#!/usr/bin/env bash
# Generate a CA and the cluster's server certificate into ./certs, as the SSL guide says:
#
#   export CLUSTER_NAME=citusdemo NAMESPACE=default
#   ./scripts/generate-ssl-certs.sh [more `certs generate` flags, e.g. --renew, --client postgres]
#
# A thin wrapper: the work is done by `patroni-citus-k8s certs generate`, which reads
# CLUSTER_NAME, NAMESPACE and PCK_CLUSTER_DOMAIN itself and prints the
# `kubectl create secret generic` command. OUT_DIR (default certs) picks the directory.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# find_certtool: print the command that runs patroni-citus-k8s, preferring the one on
# PATH, then the venv scripts/setup makes, then this checkout's Python package.
find_certtool() {
    if command -v patroni-citus-k8s >/dev/null 2>&1; then
        echo patroni-citus-k8s
    elif [ -x /opt/patroni-citus-k8s/venv/bin/patroni-citus-k8s ]; then
        echo /opt/patroni-citus-k8s/venv/bin/patroni-citus-k8s
    elif [ -f "$here/entrypoint/__main__.py" ] && PYTHONPATH="$here" python3 -c 'import entrypoint.cli, entrypoint.certs.commands' >/dev/null 2>&1; then
        echo "python3 -m entrypoint"
    else
        echo "generate-ssl-certs.sh: cannot find patroni-citus-k8s (nor a python3 that can import this checkout's entrypoint package):" \
             "install it with scripts/setup (as root), or put it on PATH" >&2
        return 2
    fi
}

main() {
    local tool
    tool=$(find_certtool) || exit 2
    if [ "$tool" = "python3 -m entrypoint" ]; then
        export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
    fi
    # shellcheck disable=SC2086  # $tool is one command or `python3 -m entrypoint`
    exec $tool certs generate --out-dir "${OUT_DIR:-certs}" "$@"
}

main "$@"
