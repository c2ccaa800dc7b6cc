"""Database privileges on PostgreSQL: the application connects as a role that cannot rewrite history.

Migrations run as the role that owns the tables (e.g. ``labtrack_owner``); the web
app and the workers connect as another role (e.g. ``labtrack_app``), to which
``grant_app_role`` gives:

- SELECT and INSERT only on the append-only tables: every table whose trigger calls
  ``labtrack_append_only()`` (the event chains, the other audit records and the signed
  checkpoints, R-AUD-2, R-AUD-4);
- SELECT, INSERT, UPDATE and DELETE on every other table (projections, outbox,
  tokens, ...);
- USAGE and SELECT on the sequences (identity columns), SELECT on alembic_version;
- nothing on the partitions of a partitioned table (``batch_events`` on PostgreSQL,
  R-SCL-1): the rows are reached through the parent, whose rights are checked; EXECUTE
  on ``labtrack_extend_batch_events``, the owner's function that makes partitions ahead,
  so partitions made later belong to the owner and give the app role nothing either;
- nothing else: no TRUNCATE, REFERENCES or TRIGGER, no DDL (on PostgreSQL 15 and
  later nobody but the database's owner may CREATE in schema ``public``).

Not owning the tables, that role cannot drop or disable the triggers; not being a
superuser, it cannot skip them (``session_replication_role``). So an UPDATE on
``batch_events`` through the application's credentials is refused by privilege
(SQLSTATE 42501) before any trigger runs. The grant revokes and grants afresh over
every table of the schema: run it again after each migration.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Connection, text

from labtrack.domain.errors import Conflict, NotFound

READ_ONLY = ("alembic_version",)


@dataclass
class Grants:
    append_only: list[str] = field(default_factory=list)
    read_write: list[str] = field(default_factory=list)
    read_only: list[str] = field(default_factory=list)
    partitions: list[str] = field(default_factory=list)


EXTEND_PARTITIONS = "labtrack_extend_batch_events(bigint, bigint)"

_TABLES = (
    "SELECT c.relname, c.relispartition FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace "
    "AND c.relkind IN ('r', 'p') ORDER BY c.relname"
)


def grant_app_role(connection: Connection, role: str) -> Grants:
    """Give ``role`` what the application needs and no more; run as the tables' owner."""
    if connection.dialect.name != "postgresql":
        raise Conflict("Database privileges are set on PostgreSQL only; SQLite has no roles.")
    found = connection.execute(
        text(
            "SELECT rolsuper, EXISTS (SELECT FROM pg_tables WHERE schemaname = current_schema() AND tableowner = :role)"
            " AS owner FROM pg_roles WHERE rolname = :role"
        ),
        {"role": role},
    ).first()
    if found is None:
        raise NotFound(f"No role {role!r} in this PostgreSQL cluster: create it first (CREATE ROLE ... LOGIN).")
    if found.rolsuper or found.owner:
        what = "a superuser" if found.rolsuper else "the tables' owner"
        raise Conflict(f"Role {role!r} is {what}: privileges would not bind it. Grant to the application's own role.")
    quote = connection.dialect.identifier_preparer.quote
    grantee, schema = quote(role), quote(connection.execute(text("SELECT current_schema()")).scalar_one())
    tables = connection.execute(text(_TABLES)).all()
    grants = Grants()
    connection.execute(text(f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {grantee}"))
    connection.execute(text(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM {grantee}"))
    connection.execute(text(f"GRANT USAGE ON SCHEMA {schema} TO {grantee}"))
    append_only = append_only_tables(connection)
    for table, is_partition in tables:
        if is_partition:
            grants.partitions.append(table)
            continue
        if table in append_only:
            rights, kind = "SELECT, INSERT", grants.append_only
        elif table in READ_ONLY:
            rights, kind = "SELECT", grants.read_only
        else:
            rights, kind = "SELECT, INSERT, UPDATE, DELETE", grants.read_write
        connection.execute(text(f"GRANT {rights} ON TABLE {quote(table)} TO {grantee}"))
        kind.append(table)
    connection.execute(text(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {grantee}"))
    if connection.execute(text(f"SELECT to_regprocedure('{EXTEND_PARTITIONS}')")).scalar() is not None:
        connection.execute(text(f"GRANT EXECUTE ON FUNCTION {EXTEND_PARTITIONS} TO {grantee}"))
    return grants


def append_only_tables(connection: Connection) -> set[str]:
    """The tables of the current schema with an append-only trigger (R-AUD-2)."""
    triggered = connection.execute(
        text(
            "SELECT DISTINCT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "JOIN pg_proc p ON p.oid = t.tgfoid "
            "WHERE p.proname = 'labtrack_append_only' AND c.relnamespace = current_schema()::regnamespace "
            "AND NOT c.relispartition"
        )
    ).scalars()
    return set(triggered)
