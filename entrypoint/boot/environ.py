"""How the entrypoint reads one environment value: empty means unset, and every value is checked for its kind.

The one place that decides what an empty value, a non-UTF-8 byte, a control character,
a relative or `/` path, a host with a comma or a number out of range means. Each reader
records a Problem and returns a safe default, so a parse reports every mistake at once.
"""

from __future__ import annotations

import difflib
import math
import os.path
import re
from typing import Mapping, Optional

from entrypoint.errors import Collector

# Every PCK_* variable the entrypoint's commands read. A PCK_* variable not listed here
# or in TOOLING_VARIABLES is a typo (PCK_CLIENT_CERT_AUTHH=true would leave mutual TLS
# off without a word), so it is refused with the closest known name.
PRODUCT_VARIABLES = (
    "PCK_CERT_DIR", "PCK_RUNTIME_DIR", "PCK_CONFIG_FILE", "PCK_SOCKET_DIR", "PCK_RUN_AS",
    "PCK_TLS_MIN_VERSION", "PCK_CLIENT_CERT_AUTH", "PCK_CLIENT_CERT", "PCK_CLIENT_KEY",
    "PCK_HEADLESS_SERVICE", "PCK_CLUSTER_DOMAIN", "PCK_EXPIRY_WARN_DAYS", "PCK_CERT_WATCH_INTERVAL",
    "PCK_DEBUG", "PCK_TLS_UPGRADE",
    # The pooler's (entrypoint/pooler/settings.py); members read the auth role's to create it.
    "PCK_POOLER_LISTEN", "PCK_POOLER_TARGET", "PCK_POOLER_SERVICE", "PCK_POOLER_AUTH_USER",
    "PCK_POOLER_AUTH_PASSWORD", "PCK_POOLER_AUTH_PASSWORD_FILE", "PCK_POOLER_POOL_MODE",
    "PCK_POOLER_MAX_CLIENT_CONN", "PCK_POOLER_DEFAULT_POOL_SIZE",
)
# Read by the project's own scripts and tests (scripts/, tests/, docker-compose.yml), never
# by the entrypoint; they may be in the environment of a developer's shell.
TOOLING_VARIABLES = (
    "PCK_PREFIX", "PCK_PYTHON", "PCK_VENV", "PCK_CACHE_DIR", "PCK_CONTAINERS", "PCK_CONTAINER_TESTS",
    "PCK_CONTAINER_LAYOUT", "PCK_BASE_HAS_CITUS", "PCK_BASE_IMAGE", "PCK_IMAGE", "PCK_TEST_IMAGE", "PCK_WHEELS",
    "PCK_ETCD_IMAGE", "PCK_CERTS_DIR", "PCK_DOCKER", "PCK_DOCKERD_PIDFILE", "PCK_COMPOSE", "PCK_KEEP_ENGINE",
    "PCK_DEBIAN_MIRROR", "PCK_BENCH_TAG", "PCK_TEST_NET",
)

# The PGSSL* variables libpq reads (PostgreSQL 15 to 17) and the two the entrypoint adds.
# Any other PGSSL* name is a typo: PGSSLMDOE=verify-full would leave every link at prefer.
SSL_VARIABLES = (
    "PGSSLMODE", "PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY", "PGSSLKEY_PASSWORD", "PGSSLKEY_PASSWORD_FILE",
    "PGSSLCRL", "PGSSLCRLDIR", "PGSSLSNI", "PGSSLCOMPRESSION", "PGSSLCERTMODE", "PGSSLMINPROTOCOLVERSION",
    "PGSSLMAXPROTOCOLVERSION", "PGSSLNEGOTIATION",
)

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# A host in a listen or connect address: an IP address or a DNS name. libpq reads a comma
# as a list of hosts and a space as the end of the value, so neither may slip in.
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*"
                   r"|[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_.])?|\*)$")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,62}$")
# File systems allow 255 bytes per name; the entrypoint writes temporary names beside its
# files (".<name>.<12 hex digits>"), so a product path's names get 200. PATH_MAX is 4096.
MAX_NAME_BYTES = 200
MAX_PATH_BYTES = 4000


class Env:
    """The environment as the entrypoint reads it. Problems with values go to `bad`."""

    def __init__(self, values: Mapping[str, str], bad: Collector) -> None:
        self.values = values
        self.bad = bad

    def given(self, name: str) -> bool:
        """Set to something other than the empty string."""
        return bool(self.values.get(name))

    def get(self, name: str, default: str = "") -> str:
        """The value, or `default` when unset or empty; a value that is not valid UTF-8 is a problem."""
        value = self.values.get(name) or ""
        if not value:
            return default
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # os.environ decodes undecodable bytes to lone surrogates
            self.bad.add(name, "holds bytes that are not valid UTF-8",
                         "set it from a UTF-8 source (a Kubernetes Secret value is bytes: re-create it as UTF-8 text)")
            return default
        return value

    def text(self, name: str, default: str = "") -> str:
        """A value that must not hold control characters (names, paths, modes): one line, no escapes."""
        value = self.get(name, default)
        if _CONTROL.search(value):
            self.bad.add(name, f"{value!r} holds control characters (a newline, a tab, ESC, ...)",
                         "set it to a single line of printable text")
            return default
        return value

    def word(self, name: str, default: str = "") -> str:
        """A keyword value (a mode, a version): surrounding blanks do not count."""
        return self.text(name, default).strip() or default

    def path(self, name: str, default: str) -> str:
        """An absolute path that is not `/` (a product directory or file never is); `default` when unset."""
        if not self.given(name):
            return default
        value = self.text(name)
        if not value:
            return default
        if not os.path.isabs(value):
            self.bad.add(name, f"{value!r} is not an absolute path", "give the full path inside the container")
            return default
        if ".." in value.split("/"):
            self.bad.add(name, f"{value!r} has a '..' component", "give the path without '..'")
            return default
        if os.path.normpath(value) in ("/", "//"):
            self.bad.add(name, f"{value!r} is the root directory",
                         "give a directory of its own (on Kubernetes, an emptyDir or volume mounted there)")
            return default
        too_long = _length_problem(value)
        if too_long:
            self.bad.add(name, too_long, "use shorter names")
            return default
        return os.path.normpath(value)

    def optional_path(self, name: str) -> Optional[str]:
        """A path as `path` checks it, or None when the variable is unset or empty."""
        path = self.path(name, "")
        return path or None

    def boolean(self, name: str, default: bool) -> bool:
        word = self.word(name).lower()
        if not word:
            return default
        if word in TRUE_WORDS or word in FALSE_WORDS:
            return word in TRUE_WORDS
        self.bad.add(name, f"{self.values[name]!r} is not a boolean", "use true or false")
        return default

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        text = self.word(name)
        if not text:
            return default
        try:
            value = int(text)
        except ValueError:
            self.bad.add(name, f"{text!r} is not a whole number", f"use a number such as {default}")
            return default
        if not low <= value <= high:
            self.bad.add(name, f"{value} is out of range", f"use a number from {low} to {high}, such as {default}")
            return default
        return value

    def seconds(self, name: str, default: float, low: float, high: float, off: Optional[float] = None) -> float:
        text = self.word(name)
        if not text:
            return default
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if off is not None and value == off:
            return value
        if not low <= value <= high:  # NaN fails both comparisons
            zero = f", or {off:g} to turn it off" if off is not None else ""
            self.bad.add(name, f"{text!r} is not a number of seconds from {low:g} to {high:g}",
                         f"use e.g. {default:g}{zero}")
            return default
        return value

    def name(self, name: str, default: str) -> str:
        """A user or role name."""
        value = self.text(name, default)
        if not _NAME.match(value):
            self.bad.add(name, f"{value!r} is not a usable name",
                         "use letters, digits, '_', '.', '@' or '-' (at most 63), starting with a letter or digit")
            return default
        return value


def _length_problem(path: str) -> Optional[str]:
    shown = repr(path if len(path) <= 60 else path[:60] + "...")
    longest = max(len(part.encode()) for part in path.split("/"))
    if longest > MAX_NAME_BYTES:
        return (f"{shown} has a name of {longest} bytes; at most {MAX_NAME_BYTES} fit here (file systems allow 255, "
                "and the entrypoint writes temporary names beside its files)")
    if len(path.encode()) > MAX_PATH_BYTES:
        return f"{shown} is {len(path.encode())} bytes long, more than {MAX_PATH_BYTES}"
    return None


def host_problem(host: str) -> Optional[str]:
    """Why `host` cannot be the host of a listen or connect address, or None."""
    if not host:
        return "the host is empty"
    if _CONTROL.search(host) or any(c.isspace() for c in host):
        return "the host holds a space or control character"
    if "," in host:
        return "the host holds a comma, which libpq reads as a list of hosts"
    if not _HOST.match(host):
        return "the host is neither an IP address nor a DNS name"
    return None


def unknown_variables(values: Mapping[str, str], bad: Collector) -> None:
    """A PCK_* or PGSSL* variable that neither the product, its tooling nor libpq reads is a typo: say which it
    resembles."""
    for name in sorted(values):
        if name.startswith("PCK_") and name not in PRODUCT_VARIABLES + TOOLING_VARIABLES:
            _typo(bad, name, PRODUCT_VARIABLES, "patroni-citus-k8s", "README.md lists every PCK_* variable")
        elif name.startswith("PGSSL") and name not in SSL_VARIABLES:
            _typo(bad, name, SSL_VARIABLES, "libpq or patroni-citus-k8s", "README.md and libpq's documentation list "
                                                                          "the PGSSL* variables")


def _typo(bad: Collector, name: str, known: tuple, reader: str, where: str) -> None:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    bad.add(name, f"is not a variable {reader} knows (a typo is silently ignored elsewhere)",
            f"did you mean {close[0]}?" if close else f"remove it; {where}")
