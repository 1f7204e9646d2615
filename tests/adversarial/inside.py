"""Runs inside the scratch root (sandbox.py), as root: build what the spec says, run the entrypoint, report.

Prints one JSON line: the exit status and output of the command, and for every watched path its
(mode, uid, gid) before and after (None when absent), plus a listing of everything outside the
read-only system directories before and after.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys

# Bound read-only from the real root by sandbox.py (PCK_SANDBOX_PREFIX and _REPO live under /opt and /work).
BOUND = ("/usr", "/etc", "/dev", "/proc", "/opt", "/work")


def _status(path: str):
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return [stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid]


def _tree() -> dict:
    out = {"/": _status("/")}
    for dirpath, dirnames, filenames in os.walk("/"):
        if dirpath == "/":
            dirnames[:] = [d for d in dirnames if f"/{d}" not in BOUND]
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            out[path] = _status(path)
    return out


def _make(entry: list) -> None:
    kind, path = entry[0], entry[1]
    if kind == "dir":
        mode, uid, gid = entry[2:]
        os.makedirs(path, exist_ok=True)
        os.chown(path, uid, gid)
        os.chmod(path, mode)
    elif kind == "file":
        data, mode, uid, gid = entry[2:]
        with open(path, "wb") as handle:
            handle.write(base64.b64decode(data))
        os.chown(path, uid, gid)
        os.chmod(path, mode)
    elif kind == "link":
        os.symlink(entry[2], path)
    elif kind == "volume":  # a fresh, empty, root-owned file system mounted there, as a PVC is
        os.makedirs(path, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755,size=1m", "pck-adv-volume", path], check=True)
    else:
        raise ValueError(kind)


def main() -> None:
    spec = json.loads(sys.argv[1])
    for entry in spec.get("make", []):
        _make(entry)
    watch = spec.get("watch", [])
    before, tree_before = {p: _status(p) for p in watch}, _tree()
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": os.environ["PYTHONPATH"], "PYTHONDONTWRITEBYTECODE": "1",
           **spec["env"]}
    result = subprocess.run([sys.executable, "-m", "entrypoint", *spec["argv"]], env=env, capture_output=True,
                            text=True, timeout=15)
    print(json.dumps({"rc": result.returncode, "stdout": result.stdout, "stderr": result.stderr,
                      "before": before, "after": {p: _status(p) for p in watch},
                      "tree_before": tree_before, "tree_after": _tree()}))


if __name__ == "__main__":
    main()
