"""A bounded client load: new verify-full connections, one query each, counting failures."""

from __future__ import annotations

import threading
import time
from typing import Optional

import psycopg


class QueryLoad:
    """Opens a new verify-full connection per query, round-robin over members, until stopped (bounded)."""

    def __init__(self, cluster: LocalCluster, max_seconds: float = 240, members: Optional[list] = None,
                 sql: str = "SELECT 1", dbname: Optional[str] = None) -> None:
        self.cluster = cluster
        self.max_seconds = max_seconds
        self.members = members
        self.sql = sql
        self._overrides = {"dbname": dbname} if dbname else {}
        self.ok = 0
        self.failures: list = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        i = 0
        while not self._stop.is_set() and time.monotonic() < deadline:
            members = self.members or self.cluster.members
            member = members[i % len(members)]
            i += 1
            try:
                with psycopg.connect(self.cluster.dsn(member, **self._overrides), autocommit=True) as conn:
                    conn.execute(self.sql).fetchone()
                self.ok += 1
            except psycopg.Error as exc:
                self.failures.append(f"{member.name}: {exc}")
            time.sleep(0.05)

    def __enter__(self) -> "QueryLoad":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)
