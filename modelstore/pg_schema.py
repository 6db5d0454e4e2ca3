"""The registry's tables in PostgreSQL, created and migrated by onnxgate itself.

`MIGRATIONS` are ordered SQL steps; step N brings the schema to version N, recorded in `onnxgate_schema_version`.
`migrate` applies the steps a database lacks, each in its own transaction under an advisory lock (several gateways
starting at once migrate once), and refuses a database whose version is newer than this code knows: an older
onnxgate must not write a schema it does not understand.
"""
from __future__ import annotations

import psycopg

from modelstore.errors import RegistrySchemaTooNew

CHANGE_CHANNEL = "onnxgate_registry"
"""The NOTIFY channel every commit announces its new revision on."""

MIGRATION_LOCK = 0x6F6E6E78  # "onnx": pg_advisory_xact_lock's key for migrations

MIGRATIONS: tuple[str, ...] = (
    # 1: the registry's state (one row: its JSON as registry.json holds it, audit_head included) and the audit log
    # (one row per line, exactly the bytes the file log holds, so the same chain code verifies both)
    """
    CREATE TABLE onnxgate_registry (
        id integer PRIMARY KEY CHECK (id = 1),
        revision bigint NOT NULL,
        document text
    );
    INSERT INTO onnxgate_registry (id, revision, document) VALUES (1, 0, NULL);
    CREATE TABLE onnxgate_audit (
        position bigint PRIMARY KEY,
        line text NOT NULL
    );
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: psycopg.Connection, where: str) -> int:
    """Bring the database to SCHEMA_VERSION; return the version it had. Raises RegistrySchemaTooNew naming `where`."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))  # first: CREATE ... IF NOT EXISTS races
        conn.execute("CREATE TABLE IF NOT EXISTS onnxgate_schema_version (version integer NOT NULL)")
        found = current_version(conn)
        if found > SCHEMA_VERSION:
            raise RegistrySchemaTooNew(f"{where}: the registry's schema is at version {found}, newer than this "
                                       f"onnxgate knows ({SCHEMA_VERSION}): upgrade onnxgate; nothing was read or written")
        if found == 0:
            conn.execute("INSERT INTO onnxgate_schema_version (version) VALUES (0)")
        for version in range(found + 1, SCHEMA_VERSION + 1):
            conn.execute(MIGRATIONS[version - 1])
            conn.execute("UPDATE onnxgate_schema_version SET version = %s", (version,))
    return found


def current_version(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT max(version) FROM onnxgate_schema_version").fetchone()
    return 0 if row is None or row[0] is None else int(row[0])
