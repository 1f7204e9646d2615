"""A throwaway root for cases that could chown `/` or `/tmp`: a private mount namespace, a tmpfs as the new root,
the system directories bound read-only into it, and a chroot. The real root is never reachable for writing.

`in_scratch_root(spec)` runs tests/adversarial/inside.py in that root as root; it builds what the spec asks
(directories, files, a fresh volume), stats the watched paths, runs the entrypoint, stats them again and
prints one JSON document. The namespace and every mount in it vanish when the command ends.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from typing import Any, Dict

from tests.adversarial.conftest import HANG, REPO

_SETUP = r"""
set -eu
R=$1; shift
mount -t tmpfs -o mode=0755,size=64m pck-adv-scratch-root "$R"
mkdir -m 1777 "$R/tmp"  # first: the checkout itself may live under /tmp (a CI clone)
for d in /usr /etc /dev /proc "$PCK_SANDBOX_PREFIX" "$PCK_SANDBOX_REPO"; do
    mkdir -p "$R$d"
    mount --rbind "$d" "$R$d"
    mount -o remount,bind,ro "$R$d"
done
for l in bin lib lib64 sbin; do
    if [ -L "/$l" ]; then ln -s "$(readlink "/$l")" "$R/$l"; fi
done
cd /
exec chroot "$R" "$PCK_SANDBOX_PYTHON" -m tests.adversarial.inside "$@"
"""



def in_scratch_root(spec: Dict[str, Any], timeout: float = HANG) -> Dict[str, Any]:
    mountpoint = tempfile.mkdtemp(prefix="pck-adv-scratch-")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1",
           "PCK_SANDBOX_PREFIX": sys.prefix, "PCK_SANDBOX_REPO": str(REPO), "PCK_SANDBOX_PYTHON": sys.executable}
    proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", _SETUP, "sh",
                             mountpoint, json.dumps(spec)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError(f"the scratch-root command hung for more than {timeout:g} s") from None
    finally:
        _remove_mountpoint(mountpoint)
    if proc.returncode != 0:
        raise AssertionError(f"the scratch root failed ({proc.returncode}): {err.decode(errors='replace')}")
    return json.loads(out.decode().strip().splitlines()[-1])


def _remove_mountpoint(path: str) -> None:
    """The mount lived only in the namespace: what is left here is an empty directory on the real /tmp."""
    os.rmdir(path)  # fails loudly if anything was ever written outside the namespace
