"""`certs revoke`: add a certificate to the cluster's CRL (or re-sign it), and print how to ship it.

Reads DIR/ca.crt, DIR/ca.key and DIR/ca.crl (when present) through the safe reader;
writes only DIR/ca.crl, atomically, and only when every check passed.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Mapping, Optional, TextIO, Tuple

from entrypoint import layout
from entrypoint.certs import crls
from entrypoint.certs.files import OutputFile, write_files
from entrypoint.certs.issue import load_ca, utc_now
from entrypoint.certs.manifests import kubectl_create_secret_command
from entrypoint.certs.names import DEFAULT_CLUSTER, DEFAULT_NAMESPACE
from entrypoint.errors import EXIT_BAD_INPUT, EXIT_OK, InputError, Problem
from entrypoint.pki import reader
from entrypoint.pki.crl import REASONS, crl_pem, issuer_of, load_crls
from entrypoint.pki.load import fully_parsed, load_certificates

COMMAND = "patroni-citus-k8s certs revoke"


def register(actions: argparse._SubParsersAction) -> None:
    rev = actions.add_parser(
        "revoke", help="add a certificate to DIR/ca.crl (signed by DIR/ca.key), or re-sign it with --refresh",
        description="Revoke a member or client certificate: its serial goes into ca.crl, signed by the CA, keeping "
                    "every earlier entry. Update the Secret with the printed command; running members refuse the "
                    "certificate within seconds, without a restart. Exit 2, nothing written, when the certificate "
                    "is from another CA, the CA key is missing, or the serial is already revoked.")
    rev.add_argument("--out-dir", metavar="DIR", default="certs",
                     help="the directory certs generate wrote (default certs)")
    which = rev.add_mutually_exclusive_group(required=True)
    which.add_argument("--cert", metavar="FILE", help="the certificate to revoke (PEM)")
    which.add_argument("--serial", metavar="HEX",
                       help="the serial number to revoke, in hex (as certs inspect shows it)")
    which.add_argument("--refresh", action="store_true", help="revoke nothing; re-sign ca.crl with a new nextUpdate")
    rev.add_argument("--reason", default="unspecified", choices=sorted(REASONS),
                     help="CRL reason (default unspecified)")
    rev.add_argument("--next-update", metavar="DAYS", type=int, default=crls.DEFAULT_CRL_DAYS,
                     help=f"days until the CRL's nextUpdate (default {crls.DEFAULT_CRL_DAYS}: past it, OpenSSL "
                          "refuses every certificate of the CA)")
    rev.add_argument("--cluster", metavar="NAME", help="cluster name for the printed command (default $CLUSTER_NAME)")
    rev.add_argument("--namespace", metavar="NS", help="namespace for the printed command (default $NAMESPACE)")
    rev.set_defaults(func=run_revoke)


def _read(path: str, kind: reader.Kind, where: str) -> bytes:
    try:
        return reader.read_file(path, kind)
    except OSError as exc:
        raise InputError([Problem(where, f"{path}: {reader.why(exc)}",
                                  "point --out-dir at the directory certs generate wrote (with ca.crt and ca.key)")],
                         COMMAND, "nothing was written") from None


def _load(args: argparse.Namespace) -> Tuple:
    """(CA certificate, CA key, existing CRL or None, the certificate named by --cert or None)."""
    d = args.out_dir
    problems: List[Problem] = []
    try:
        ca_cert, ca_key = load_ca(_read(os.path.join(d, layout.CA_FILE), reader.CERTIFICATE, "--out-dir"),
                                  _read(os.path.join(d, layout.CA_KEY_FILE), reader.PRIVATE_KEY, "--out-dir"))
    except (ValueError, TypeError) as exc:
        raise InputError([Problem("--out-dir", f"the CA in {d} cannot sign a CRL: {exc or 'the key is encrypted'}",
                                  "give the directory holding the CA's own ca.crt and an unencrypted ca.key")],
                         COMMAND, "nothing was written") from None
    crl, held = None, []
    crl_path = os.path.join(d, layout.CRL_FILE)
    if os.path.lexists(crl_path):
        try:
            held = load_crls(_read(crl_path, reader.CRL, "--out-dir"))
        except ValueError as exc:
            problems.append(Problem(crl_path, f"is not a PEM CRL ({exc})", "move it away to start a new CRL"))
        crl, why = _own_crl(held, ca_cert)
        if why:
            problems.append(Problem(crl_path, why, "keep one CRL per CA in the file"))
    cert = None
    if args.cert:
        try:
            cert = load_certificates(_read(args.cert, reader.CERTIFICATE, "--cert"))[0]
            if not fully_parsed(cert):
                raise ValueError("its fields do not parse")
        except ValueError as exc:
            problems.append(Problem("--cert", f"{args.cert} is not a PEM certificate ({exc})", "give the PEM file"))
    if problems:
        raise InputError(problems, COMMAND, "nothing was written")
    return ca_cert, ca_key, crl, cert, held


def _own_crl(held: list, ca_cert) -> Tuple:
    """(this CA's CRL or None, a problem or None) among the CRLs of DIR/ca.crl.

    A file of one CRL is that CA's (check_existing refuses it when it is not); during a CA
    rotation the file holds one CRL per CA, and only this CA's is re-signed.
    """
    if len(held) <= 1:
        return (held[0] if held else None), None
    mine = [c for c in held if issuer_of(c, [ca_cert]) is not None]  # by key too: a renewed CA keeps its name
    if len(mine) > 1:
        return None, f"holds {len(mine)} CRLs of the CA {ca_cert.subject.rfc4514_string()}"
    return (mine[0] if mine else None), None


def _with_new(held: list, old, new) -> list:
    """The file's CRLs with this CA's replaced by `new` (appended when it had none), the others unchanged."""
    if old is None:
        return [*held, new]
    return [new if c is old else c for c in held]


def _serial(args: argparse.Namespace, cert) -> Optional[int]:
    if cert is not None:
        return int(cert.serial_number)
    if args.serial is None:
        return None
    try:
        value = int(args.serial.replace(":", ""), 16)
    except ValueError:
        value = -1
    if not 0 < value < 1 << 159:  # RFC 5280: at most 20 octets, positive; the CRL cannot carry more
        raise InputError([Problem("--serial", f"{args.serial[:60]!r} is not a positive hex number of at most 159 "
                                              "bits (40 hex digits)",
                                  "give the serial as certs inspect prints it, e.g. 1f3a9c")],
                         COMMAND, "nothing was written")
    return value


def run_revoke(args: argparse.Namespace, env: Optional[Mapping[str, str]] = None,
               out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Revoke (or refresh) as `args` say; 0, or 2 with every problem and nothing written."""
    env = os.environ if env is None else env
    try:
        if not 1 <= args.next_update <= crls.MAX_CRL_DAYS:
            raise InputError([Problem("--next-update", f"{args.next_update} is out of range",
                                      f"give 1 to {crls.MAX_CRL_DAYS} days")], COMMAND, "nothing was written")
        ca_cert, ca_key, crl, cert, held = _load(args)
        serial = _serial(args, cert)
        crl_path = os.path.join(args.out_dir, layout.CRL_FILE)
        problems = crls.check_existing(ca_cert, crl, crl_path)
        if serial is not None:
            problems += crls.check_revocation(ca_cert, crl, serial, cert, args.cert or "--serial")
        if problems:
            raise InputError(problems, COMMAND, "nothing was written")
    except InputError as exc:
        print(exc.report(), file=err)
        return EXIT_BAD_INPUT
    new = crls.revoke(ca_cert, ca_key, crl, [serial] if serial is not None else [], args.reason, utc_now(),
                      args.next_update)
    try:
        text = crl_pem(_with_new(held, crl, new))
        write_files(args.out_dir, [OutputFile(layout.CRL_FILE, text, 0o644)], replace=True)
    except OSError as exc:
        print(InputError([Problem("--out-dir", f"cannot write {crl_path}: {exc.strerror or exc}",
                                  "choose a directory you can write to")], COMMAND, "nothing was written").report(),
              file=err)
        return EXIT_BAD_INPUT
    _print(args, env, new, serial, out)
    return EXIT_OK


def _print(args: argparse.Namespace, env: Mapping[str, str], crl, serial: Optional[int], out: TextIO) -> None:
    done = f"revoked serial {serial:x} ({args.reason})" if serial is not None else "re-signed"
    print(f"{done}: wrote {os.path.join(args.out_dir, layout.CRL_FILE)} ({len(list(crl))} revoked, "
          f"CRL number {crls.crl_number(crl)}, nextUpdate {crl.next_update_utc:%Y-%m-%d})", file=out)
    cluster = args.cluster or env.get("CLUSTER_NAME") or DEFAULT_CLUSTER
    namespace = args.namespace or env.get("NAMESPACE") or DEFAULT_NAMESPACE
    print("\nShip it: update the Secret in place (members pick it up within seconds, no restart):\n", file=out)
    print(kubectl_create_secret_command(cluster, namespace, args.out_dir, crl=True, apply=True), file=out)
