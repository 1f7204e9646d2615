"""A bounded client load: new verify-full connections, one query each, counting failures."""

from __future__ import annotations

import threading
import time
from typing import Optional

import psycopg


class BackgroundLoop:
    """`_loop` on a daemon thread for the length of a `with` block, bounded by `max_seconds`.

    `_loop` keeps going while `running()`; leaving the block stops it and waits for the thread.
    """

    def __init__(self, max_seconds: float) -> None:
        self.max_seconds = max_seconds
        self._deadline = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self._deadline = time.monotonic() + self.max_seconds
        self._loop()

    def _loop(self) -> None:
        raise NotImplementedError

    def running(self) -> bool:
        return not self._stop.is_set() and time.monotonic() < self._deadline

    def stopping(self) -> bool:
        return self._stop.is_set()

    def __enter__(self) -> "BackgroundLoop":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)


class QueryLoad(BackgroundLoop):
    """Opens a new verify-full connection per query, round-robin over members, until stopped (bounded)."""

    def __init__(self, cluster: LocalCluster, max_seconds: float = 240, members: Optional[list] = None,
                 sql: str = "SELECT 1", dbname: Optional[str] = None) -> None:
        super().__init__(max_seconds)
        self.cluster = cluster
        self.members = members
        self.sql = sql
        self._overrides = {"dbname": dbname} if dbname else {}
        self.ok = 0
        self.failures: list = []

    def _loop(self) -> None:
        i = 0
        while self.running():
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
