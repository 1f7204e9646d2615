"""`probe readiness|liveness`: ask the local Patroni REST API, with the TLS (and client certificate) the node uses."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

from entrypoint.boot.settings import config_file_path
from entrypoint.pki import reader


def cmd_probe(args: argparse.Namespace) -> int:
    """Exit 0 when the local REST API answers 200 for the kind asked, 1 otherwise."""
    import ssl
    import urllib.error
    import urllib.request

    import yaml

    path = config_file_path(os.environ)
    try:
        config = yaml.safe_load(reader.read_file(path, reader.CONFIG))
    except OSError as exc:
        print(f"probe: cannot read {path}: {reader.why(exc)} (has run started?)", file=sys.stderr)
        return 1
    except yaml.YAMLError:
        print(f"probe: {path} is not the YAML run writes (was it replaced?)", file=sys.stderr)
        return 1
    restapi = config.get("restapi", {}) if isinstance(config, dict) else {}
    ctl = config.get("ctl", {}) if isinstance(config, dict) else {}
    listen_host, _, port = str(restapi.get("listen", ":8008")).rpartition(":")
    # A wildcard listen is reached on loopback; a specific address only on itself.
    host = "127.0.0.1" if listen_host.strip("[]") in ("", "*", "0.0.0.0", "::") else listen_host
    scheme = "https" if restapi.get("certfile") else "http"
    context: Optional[ssl.SSLContext] = None
    if scheme == "https":
        # A local call by address: the chain is checked when there is a CA, the name cannot be.
        context = ssl.create_default_context(cafile=ctl.get("cacert") or restapi.get("cafile"))
        context.check_hostname = False
        if not (ctl.get("cacert") or restapi.get("cafile")):
            context.verify_mode = ssl.CERT_NONE
        if restapi.get("verify_client") == "required":
            context.load_cert_chain(ctl.get("certfile") or restapi["certfile"],
                                    ctl.get("keyfile") or restapi["keyfile"])
    url = f"{scheme}://{host}:{port}/{args.kind}"
    try:
        with urllib.request.urlopen(url, timeout=args.timeout, context=context) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"probe: {url}: {exc}", file=sys.stderr)
        return 1
