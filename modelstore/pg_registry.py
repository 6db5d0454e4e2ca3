"""The registry and its audit log in PostgreSQL (psycopg 3, a psycopg_pool connection pool): a RegistryBackend that
several machines share.

One row holds the registry's JSON exactly as registry.json would (its `audit_head` included, signed with
ONNXGATE_AUDIT_KEY as the file registry signs it) and a revision number; the audit log is one row per line, the same
hash-chained lines as audit.log, so `onnxgate audit verify` and `history` read both alike (modelstore.audit). A commit
is one transaction: lock the row, compare its revision with the one the caller read (RevisionConflict if another
writer got there first; the transition API retries), append the entries, write the state and NOTIFY the new revision
on CHANGE_CHANNEL (delivered when the transaction commits; modelstore.pg_feed listens). A crash mid-commit rolls it
all back, so there is nothing to withdraw with an `aborted` entry.

A database that cannot be reached is RegistryUnavailable for `read` and `commit`; `revision` never raises and returns
UNAVAILABLE instead, which differs from every good revision.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from modelstore.audit import (
    AUDIT_KEY_ENV,
    GENESIS,
    AuditHead,
    AuditStatus,
    load_head_signer,
    new_entry,
    parse_entries,
    recorded_head,
    split_lines,
    verify_anchored,
    verify_log,
)
from modelstore.backends import ChangeFeed, PolledArtifacts, Revision, Snapshot
from modelstore.errors import (
    InvalidTransition,
    RegistryMissing,
    RegistryUnavailable,
    RevisionConflict,
    StoreError,
    TargetNotEmpty,
)
from modelstore.fileio import sha256_bytes
from modelstore.pg_schema import CHANGE_CHANNEL, migrate
from modelstore.registry import RegistryData, parse_registry, registry_bytes_with_head

# The pool logs every failed reconnection attempt; without a handler of the application's own, Python's last-resort
# handler would print each to stderr. RegistryUnavailable (and the gateway's health) say what is wrong instead.
logging.getLogger("psycopg.pool").addHandler(logging.NullHandler())

UNAVAILABLE = "unavailable"
URL_SCHEMES = ("postgresql://", "postgres://")

_STATE_AND_LOG = """
    SELECT r.revision, r.document,
           (SELECT coalesce(string_agg(a.line, E'\\n' ORDER BY a.position), '') FROM onnxgate_audit a)
    FROM onnxgate_registry r WHERE r.id = 1
"""


def redacted(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unparsable URL)"
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{parts.get('host', '')}{port}/{parts.get('dbname', '')}"


class PgAuditTrail:
    """The audit log's lines in the database, read as one consistent snapshot."""

    def __init__(self, registry: PgRegistry) -> None:
        self._registry = registry
        self.display = f"audit log in {registry.display}"

    def read_bytes(self) -> bytes:
        return self._registry.state_and_log()[2]

    def stamp(self) -> str:
        """The registry's revision: every line is added by a commit (or a restore), which moves it."""
        return self._registry.revision()

    def entries(self) -> list[dict]:
        return parse_entries(self.read_bytes(), self.display)

    def verify(self, head: AuditHead | None = None) -> int:
        return verify_log(self.read_bytes(), self.display, head)


class PgRegistry:
    def __init__(self, url: str, *, max_connections: int = 4, timeout_s: float = 5.0,
                 audit_key: Path | None = None) -> None:
        """`timeout_s`: how long an operation waits for a connection before the database counts as unavailable.
        `audit_key`: the private key that signs the audit head (default: $ONNXGATE_AUDIT_KEY, else none)."""
        self.url = url
        self.display = f"registry {redacted(url)}"
        env_key = os.environ.get(AUDIT_KEY_ENV)
        self.audit_key = Path(audit_key) if audit_key else Path(env_key) if env_key else None
        self.timeout_s = timeout_s
        self._pool = ConnectionPool(url, min_size=1, max_size=max_connections, open=False, timeout=timeout_s,
                                    check=ConnectionPool.check_connection, name="onnxgate-registry",
                                    kwargs={"connect_timeout": max(1, round(timeout_s)),
                                            "application_name": "onnxgate"})
        self._opened = False
        self._migrated = False
        self._open_lock = threading.Lock()
        self._audit = PgAuditTrail(self)

    @property
    def audit(self) -> PgAuditTrail:
        return self._audit

    def close(self) -> None:
        with self._open_lock:
            if self._opened:
                self._pool.close()
                self._opened = False

    def change_feed(self, *, poll_s: float, debounce_ms: int, artifacts: PolledArtifacts | None = None) -> ChangeFeed:
        from modelstore.pg_feed import PgChangeFeed  # asyncio: only a server following the registry needs it

        return PgChangeFeed(self.url, self, poll_s=poll_s, debounce_ms=debounce_ms, artifacts=artifacts)

    # -- the RegistryBackend protocol ---------------------------------------------------------------------------------

    def read(self) -> Snapshot:
        revision, document, log = self.state_and_log()
        if document is None:
            if log:
                raise RegistryMissing(f"{self.display} holds no registry, but its audit log records changes to it: "
                                      "rebuild it with `onnxgate audit replay --restore`")
            return Snapshot(RegistryData(), revision)
        return Snapshot(parse_registry(document, self.display), revision)

    def revision(self) -> Revision:
        try:
            with self._connection(explain=False) as conn:
                row = conn.execute("SELECT revision FROM onnxgate_registry WHERE id = 1").fetchone()
        except StoreError:
            return UNAVAILABLE
        return str(row[0])

    def commit(self, expected: Revision, state: RegistryData, entries: list[dict]) -> Revision:
        signer = load_head_signer(self.audit_key)  # a key that cannot be used refuses the commit before any write
        with self._connection() as conn, conn.transaction():
            current = conn.execute("SELECT revision FROM onnxgate_registry WHERE id = 1 FOR UPDATE").fetchone()[0]
            if str(current) != expected:
                raise RevisionConflict(f"{self.display} changed since it was read")
            new_revision = current + 1
            state.revision += 1
            try:
                head = self._append(conn, entries, state.revision)
                document = registry_bytes_with_head(state, recorded_head(head, state, signer)).decode()
                self._write(conn, new_revision, document)
            except BaseException:
                state.revision -= 1
                raise
        return str(new_revision)

    # -- what the audit commands need --------------------------------------------------------------------------------

    def verify_audit(self, public_key: bytes | None = None) -> AuditStatus:
        """The audit log checked against the head the registry records (modelstore.audit.verify_anchored)."""
        _, document, log = self.state_and_log()
        return verify_anchored(document.encode() if document is not None else None, log, self.display,
                               self._audit.display, public_key)

    def restore(self, state: RegistryData) -> None:
        """Write `state` (rebuilt from the audit log) where the database holds no registry; never over one."""
        signer = load_head_signer(self.audit_key)
        with self._connection() as conn, conn.transaction():
            current, document = conn.execute(
                "SELECT revision, document FROM onnxgate_registry WHERE id = 1 FOR UPDATE").fetchone()
            if document is not None:
                raise InvalidTransition(f"{self.display} holds a registry: restore only replaces a missing one")
            head = self._append(conn, [], state.revision)
            self._write(conn, current + 1, registry_bytes_with_head(state, recorded_head(head, state, signer)).decode())

    def export_raw(self) -> tuple[bytes | None, bytes]:
        """The registry's JSON (None when there is none) and the audit log's lines, as audit.log would hold them."""
        _, document, log = self.state_and_log()
        return (document.encode() if document is not None else None,
                b"".join(line + b"\n" for line in split_lines(log)))

    def import_raw(self, document: bytes, log: bytes) -> None:
        """Write a registry and its audit log copied verbatim from another store (modelstore.migrate) into this empty
        database, in one transaction. TargetNotEmpty if it holds a registry or any audit line."""
        with self._connection() as conn, conn.transaction():
            current, existing = conn.execute(
                "SELECT revision, document FROM onnxgate_registry WHERE id = 1 FOR UPDATE").fetchone()
            if existing is not None or conn.execute("SELECT 1 FROM onnxgate_audit LIMIT 1").fetchone():
                raise TargetNotEmpty(f"{self.display}: the target already holds a registry or an audit log")
            rows = [(position, line.decode()) for position, line in enumerate(split_lines(log), start=1)]
            if rows:
                with conn.cursor() as cursor:
                    cursor.executemany("INSERT INTO onnxgate_audit (position, line) VALUES (%s, %s)", rows)
            self._write(conn, current + 1, document.decode())

    def state_and_log(self) -> tuple[Revision, str | None, bytes]:
        """(revision, the registry's JSON or None, the audit log's lines), as one snapshot of the database."""
        with self._connection() as conn:
            revision, document, log = conn.execute(_STATE_AND_LOG).fetchone()
        return str(revision), document, log.encode()

    # -- inside a transaction ----------------------------------------------------------------------------------------

    def _append(self, conn: psycopg.Connection, entries: list[dict], revision: int) -> AuditHead:
        """Chain `entries` onto the log's last line; return the log's head after them."""
        last = conn.execute("SELECT position, line FROM onnxgate_audit ORDER BY position DESC LIMIT 1").fetchone()
        position, previous = (last[0], last[1].encode()) if last else (0, None)
        rows = []
        for entry in entries:
            _, line = new_entry(previous, **{**entry, "revision": revision})
            previous = line.rstrip(b"\n")
            position += 1
            rows.append((position, previous.decode()))
        if rows:
            with conn.cursor() as cursor:
                cursor.executemany("INSERT INTO onnxgate_audit (position, line) VALUES (%s, %s)", rows)
        return AuditHead(position, sha256_bytes(previous) if previous else GENESIS)

    def _write(self, conn: psycopg.Connection, revision: int, document: str) -> None:
        conn.execute("UPDATE onnxgate_registry SET revision = %s, document = %s WHERE id = 1", (revision, document))
        conn.execute("SELECT pg_notify(%s, %s)", (CHANGE_CHANNEL, str(revision)))

    @contextlib.contextmanager
    def _connection(self, *, explain: bool = True) -> Iterator[psycopg.Connection]:
        """A pooled connection, the schema migrated on first use; a lost database is RegistryUnavailable, whose
        message says why when `explain` (the pool's own timeout says only that no connection came)."""
        try:
            self._ensure_open()
            with self._pool.connection() as conn:
                yield conn
        except PoolTimeout:
            reason = self._why_no_connection() if explain else None
            raise RegistryUnavailable(f"{self.display} cannot be reached: "
                                      f"{reason or f'no connection within {self.timeout_s:g} s'}") from None
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise RegistryUnavailable(f"{self.display} cannot be reached: {_first_line(exc)}") from None

    def _why_no_connection(self) -> str | None:
        """One direct connection attempt, for its error message; None if it connects (the pool was only busy)."""
        try:
            with psycopg.connect(self.url, connect_timeout=max(1, round(self.timeout_s))):
                return None
        except psycopg.Error as exc:
            return _first_line(exc).removeprefix("connection failed: ")

    def _ensure_open(self) -> None:
        with self._open_lock:
            if not self._opened:
                self._pool.open(wait=False)
                self._opened = True
            if not self._migrated:
                with self._pool.connection() as conn:
                    migrate(conn, self.display)
                self._migrated = True


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def is_registry_url(value: str) -> bool:
    return value.startswith(URL_SCHEMES)
