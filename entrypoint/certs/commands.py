"""The `certs generate` and `certs inspect` subcommands: flags and environment in, exit status out."""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Mapping, Optional, TextIO

from entrypoint.certs.crls import DEFAULT_CRL_DAYS
from entrypoint.certs.issue import DEFAULT_CA_DAYS, DEFAULT_SERVER_DAYS
from entrypoint.certs.names import DEFAULT_COORDINATOR_REPLICAS, DEFAULT_GROUPS, DEFAULT_WORKER_REPLICAS
from entrypoint.errors import EXIT_BAD_INPUT, EXIT_OK, InputError, Problem, printable
from entrypoint.pki.keys import DEFAULT_KEY_TYPE, KEY_TYPE_NAMES


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `certs` with its `generate` and `inspect` subcommands to `subparsers`."""
    certs = subparsers.add_parser(
        "certs", help="generate or inspect the cluster's TLS certificates",
        description="Generate a CA and the server/client certificates a cluster needs, or inspect certificates.")
    actions = certs.add_subparsers(dest="certs_command", metavar="ACTION")
    actions.required = True

    _register_generate(actions)
    ins = actions.add_parser(
        "inspect", help="show subject, names, validity, key and chain of certificates and keys",
        description="Show each certificate and key in PATH (files, or directories of *.crt, *.pem, "
                    "*.key): subject, SANs, validity and days left, key type, which key matches which "
                    "certificate, the chain to --ca and whether each --host is covered. Exit status 2 "
                    "when a check fails or a file cannot be read.")
    ins.add_argument("paths", metavar="PATH", nargs="+")
    ins.add_argument("--ca", metavar="FILE", help="CA certificate (bundle) each certificate must chain to")
    ins.add_argument("--host", metavar="NAME", action="append", default=[],
                     help="a host name or IP address the certificates must cover, as libpq verify-full checks "
                          "(repeatable)")
    ins.add_argument("--warn-days", metavar="DAYS", type=int, default=30,
                     help="warn when a certificate has fewer days left (default 30)")
    ins.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    ins.set_defaults(func=run_inspect)

    from entrypoint.certs import revoke
    revoke.register(actions)


def _register_generate(actions: argparse._SubParsersAction) -> None:
    gen = actions.add_parser(
        "generate", help="write ca.crt, ca.key, server.crt, server.key (and client certificates)",
        description="Write a CA and a server certificate whose names make verify-full work for the "
                    "cluster's Kubernetes Services and pods. Keys are created mode 0600; existing "
                    "files are never replaced without --force (or --renew for the server files).")
    gen.add_argument("--cluster", metavar="NAME",
                     help="cluster name, the headless Service and Service prefix "
                          "(default $CLUSTER_NAME, else citusdemo)")
    gen.add_argument("--namespace", metavar="NS", help="Kubernetes namespace (default $NAMESPACE, else default)")
    gen.add_argument("--domain", metavar="DOMAIN",
                     help="Kubernetes cluster domain (default $PCK_CLUSTER_DOMAIN, else cluster.local)")
    gen.add_argument("--groups", metavar="N", type=int, default=DEFAULT_GROUPS,
                     help=f"number of Citus groups: coordinator 0 plus workers 1..N-1 (default {DEFAULT_GROUPS})")
    gen.add_argument("--san", metavar="NAME", action="append", default=[],
                     help="an extra DNS name or IP address for the server certificate (repeatable)")
    gen.add_argument("--key-type", metavar="TYPE", default=DEFAULT_KEY_TYPE,
                     help=f"one of {', '.join(KEY_TYPE_NAMES)} (default {DEFAULT_KEY_TYPE})")
    gen.add_argument("--ca-days", metavar="DAYS", type=int, default=DEFAULT_CA_DAYS,
                     help=f"CA validity (default {DEFAULT_CA_DAYS})")
    gen.add_argument("--server-days", metavar="DAYS", type=int, default=DEFAULT_SERVER_DAYS,
                     help=f"server and client certificate validity (default {DEFAULT_SERVER_DAYS})")
    gen.add_argument("--out-dir", metavar="DIR", default="certs", help="output directory (default certs)")
    gen.add_argument("--client", metavar="USER", action="append", default=[],
                     help="also write client-USER.crt/.key with CN=USER for mutual TLS (repeatable)")
    gen.add_argument("--force", action="store_true",
                     help="replace existing files, including the CA (everything must then trust the new ca.crt)")
    gen.add_argument("--renew", action="store_true",
                     help="keep ca.crt/ca.key from --out-dir and write a new server certificate (and clients)")
    gen.add_argument("--k8s-secret", metavar="LAYOUT", nargs="?", const="opaque",
                     help="also write secret.yaml (mode 0600): 'opaque' (ca.crt, server.crt, server.key; "
                          "the default) or 'tls' (kubernetes.io/tls: tls.crt, tls.key, ca.crt)")
    gen.add_argument("--cert-manager", action="store_true",
                     help="also write cert-manager.yaml: a CA Issuer and a Certificate with the same names")
    gen.add_argument("--per-member", action="store_true",
                     help="instead of one shared server pair, one SAN-exact pair per pod (<pod>.crt/.key), so a "
                          "single member can be revoked; for compose and hand-made setups")
    gen.add_argument("--coordinator-replicas", metavar="N", type=int, default=DEFAULT_COORDINATOR_REPLICAS,
                     help="members of the coordinator group, for --per-member "
                          f"(default {DEFAULT_COORDINATOR_REPLICAS})")
    gen.add_argument("--worker-replicas", metavar="N", type=int, default=DEFAULT_WORKER_REPLICAS,
                     help=f"members of each worker group, for --per-member (default {DEFAULT_WORKER_REPLICAS})")
    gen.add_argument("--crl-days", metavar="DAYS", type=int, default=DEFAULT_CRL_DAYS,
                     help=f"nextUpdate of the empty ca.crl written with a new CA (default {DEFAULT_CRL_DAYS})")
    gen.set_defaults(func=run_generate)


def _fail(command: str, problems: List[Problem], err: TextIO) -> int:
    outcome = "nothing was written" if command == "generate" else "the check failed"
    print(InputError(problems, f"patroni-citus-k8s certs {command}", outcome).report(), file=err)
    return EXIT_BAD_INPUT


def generate_request_from(args: argparse.Namespace, env: Mapping[str, str]):
    """Return the GenerateRequest for parsed flags, environment filling what flags leave unset."""
    from entrypoint.certs import names as cn
    from entrypoint.certs.generate import GenerateRequest

    names = cn.ClusterNames(
        cluster=args.cluster if args.cluster is not None else env.get("CLUSTER_NAME") or cn.DEFAULT_CLUSTER,
        namespace=args.namespace if args.namespace is not None else env.get("NAMESPACE") or cn.DEFAULT_NAMESPACE,
        domain=args.domain if args.domain is not None else env.get("PCK_CLUSTER_DOMAIN") or cn.DEFAULT_DOMAIN,
        groups=args.groups,
        extra=tuple(args.san),
        coordinator_replicas=args.coordinator_replicas,
        worker_replicas=args.worker_replicas,
    )
    return GenerateRequest(
        names=names, key_type=args.key_type, ca_days=args.ca_days, server_days=args.server_days,
        clients=tuple(dict.fromkeys(args.client)), renew=args.renew, secret_type=args.k8s_secret,
        cert_manager=args.cert_manager, per_member=args.per_member, crl_days=args.crl_days)


def run_generate(args: argparse.Namespace, env: Optional[Mapping[str, str]] = None,
                 out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Generate certificates as `args` say; return 0, or 2 with one message per problem."""
    from entrypoint.certs import generate
    from entrypoint.certs.files import write_files
    from entrypoint.certs.issue import utc_now

    request = generate_request_from(args, os.environ if env is None else env)
    out_dir = args.out_dir
    try:
        ca = _check_generate(args, request)
        files = generate.build_outputs(request, utc_now(), ca, _existing_crl(out_dir) if request.renew else None)
    except InputError as exc:
        return _fail("generate", list(exc.problems), err)
    created_dir = _make_out_dir(out_dir)
    try:
        write_files(out_dir, files, replace=args.force or args.renew)
    except FileExistsError as exc:
        _remove_if_created(out_dir, created_dir)
        return _fail("generate", [Problem(str(exc.filename), "appeared while writing",
                                          "run again with --force to replace it")], err)
    except OSError as exc:
        _remove_if_created(out_dir, created_dir)
        return _fail("generate", [Problem("--out-dir", f"cannot write to {out_dir!r}: {exc.strerror or exc}",
                                          "choose a directory you can write to")], err)
    _print_generated(request, out_dir, files, out)
    return EXIT_OK


def _check_generate(args: argparse.Namespace, request):
    """The problems found before anything is written; returns the existing CA for --renew, else None.

    Raises InputError."""
    from entrypoint.certs import generate

    out_dir = args.out_dir
    problems = generate.check_request(request)
    if args.force and args.renew:
        problems.append(Problem("--force, --renew", "contradict each other: --renew keeps the CA, --force replaces it",
                                "give one of them"))
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        problems.append(Problem("--out-dir", f"{out_dir!r} is not a directory",
                                "give a directory (it is created if missing)"))
    if problems:
        raise InputError(problems)
    ca = _load_existing_ca(out_dir) if request.renew else None
    existing = [os.path.join(out_dir, n) for n in generate.output_names(request)
                if os.path.lexists(os.path.join(out_dir, n))]
    if existing and not (args.force or args.renew):
        raise InputError([Problem(", ".join(existing), f"already exist{'s' if len(existing) == 1 else ''}",
                                  "use --renew to issue a new server certificate from the existing CA, --force to "
                                  "replace everything including the CA (every node and client must then trust the "
                                  "new ca.crt), or another --out-dir")])
    return ca


def _existing_crl(out_dir: str) -> Optional[bytes]:
    """The ca.crl a --renew keeps (so a printed Secret still carries it), or None."""
    from entrypoint import layout
    from entrypoint.pki import reader

    try:
        return reader.read_file(os.path.join(out_dir, layout.CRL_FILE), reader.CRL)
    except OSError:
        return None


def _load_existing_ca(out_dir: str):
    """Return (cert, key) from out_dir's ca.crt/ca.key; raises InputError."""
    from entrypoint import layout
    from entrypoint.certs.issue import load_ca

    cert_path, key_path = (os.path.join(out_dir, n) for n in (layout.CA_FILE, layout.CA_KEY_FILE))
    missing = [p for p in (cert_path, key_path) if not os.path.isfile(p)]
    if missing:
        raise InputError([Problem("--renew", f"needs the existing CA, but {', '.join(missing)} "
                                             f"{'is' if len(missing) == 1 else 'are'} missing",
                                  "point --out-dir at the directory holding ca.crt and ca.key, or run without "
                                  "--renew to create a CA")])
    from entrypoint.pki import reader

    try:
        return load_ca(reader.read_file(cert_path, reader.CERTIFICATE), reader.read_file(key_path, reader.PRIVATE_KEY))
    except TypeError:
        raise InputError([Problem(key_path, "is encrypted: --renew needs an unencrypted CA key",
                                  f"decrypt a copy with `openssl pkey -in {key_path} -out ca.key` in a private "
                                  "directory")]) from None
    except OSError as exc:
        raise InputError([Problem("--renew", f"cannot use the CA in {out_dir!r}: {exc.filename}: {reader.why(exc)}",
                                  "give the --out-dir holding the CA's own ca.crt and ca.key (PEM)")]) from None
    except ValueError as exc:
        raise InputError([Problem("--renew", f"cannot use the CA in {out_dir!r}: {exc}",
                                  "give the --out-dir holding the CA's own ca.crt and ca.key (PEM)")]) from None


def _make_out_dir(out_dir: str) -> bool:
    """Create out_dir if missing; return whether this call created it."""
    if os.path.isdir(out_dir):
        return False
    try:
        os.makedirs(out_dir, mode=0o755)
    except OSError:
        return False  # write_files reports it with the directory's name
    return True


def _remove_if_created(out_dir: str, created: bool) -> None:
    if created:
        try:
            os.rmdir(out_dir)
        except OSError:
            pass


def _print_generated(request, out_dir: str, files, out: TextIO) -> None:
    from entrypoint.certs import generate, manifests
    from entrypoint.certs.names import server_names

    names = request.names
    for f in files:
        print(f"wrote {os.path.join(out_dir, f.name)} (mode {f.mode:04o})", file=out)
    sans = server_names(names)
    print(f"server certificate: {request.key_type}, {request.server_days} days, {len(sans)} names: "
          f"{', '.join(sans)}", file=out)
    if request.per_member:
        pods = ", ".join(pod for _, pod in names.pods())
        print(f"\none pair per member ({pods}): mount <pod>.crt/.key as server.crt/server.key in that member only, "
              f"with ca.crt and ca.crl; revoke one with: patroni-citus-k8s certs revoke --out-dir {out_dir} "
              f"--cert {os.path.join(out_dir, '<pod>.crt')}", file=out)
        return
    crl = os.path.exists(os.path.join(out_dir, "ca.crl"))
    print("\nCreate the Secret the chart mounts:\n", file=out)
    print(manifests.kubectl_create_secret_command(names.cluster, names.namespace, out_dir, crl=crl), file=out)
    if request.secret_type:
        print(f"\nor apply the manifest (it holds the private key; do not commit it):\n\n"
              f"kubectl apply -f {os.path.join(out_dir, generate.SECRET_FILE)}", file=out)
    if request.cert_manager:
        print(f"\nWith cert-manager instead: store the CA for the Issuer, then apply the Issuer and "
              f"Certificate:\n\n{manifests.kubectl_create_ca_secret_command(names.cluster, names.namespace, out_dir)}\n"
              f"kubectl apply -f {os.path.join(out_dir, generate.CERT_MANAGER_FILE)}", file=out)


def run_inspect(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Inspect the files in `args.paths`; return 0, or 2 when a file is unreadable or a check fails."""
    import json

    from entrypoint.certs import inspect

    report = inspect.inspect_paths(args.paths, ca_path=args.ca, hosts=args.host, warn_days=args.warn_days)
    if args.json:
        print(json.dumps(inspect.report_json(report), indent=2), file=out)
    else:
        print(inspect.render_text(report), file=out)
    for warning in report.warnings:
        print(f"certs inspect: warning: {printable(warning)}", file=err)
    if report.problems:
        return _fail("inspect", report.problems, err)
    return EXIT_OK
