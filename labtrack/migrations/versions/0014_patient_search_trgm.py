"""patient search: a trigram index on PostgreSQL

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 14:40:00

Hand-written (issue 13).

- R-SCL-4, PostgreSQL only: patient search by part of a name or an MRN
  (``lower(column) LIKE '%text%'``, on the patients page and the bench's patient filter)
  could use no b-tree index and read the whole table. ``pg_trgm``'s GIN index on the
  three lowered columns serves it (one index, each column its own key, so
  ``… OR …`` over the three is a BitmapOr of the same index). SQLite keeps no such
  index: it has no trigram indexes, and a lab on SQLite is small.
- ``CREATE EXTENSION IF NOT EXISTS pg_trgm``: the extension is trusted since
  PostgreSQL 13, so a database owner without superuser may create it. The downgrade
  drops the index and leaves the extension (other objects may use it).
"""
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

INDEX = 'ix_patients_search_trgm'
COLUMNS = ('family_name', 'given_name', 'mrn')


def upgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.execute('CREATE EXTENSION IF NOT EXISTS pg_trgm')
    keys = ', '.join(f'lower({column}) gin_trgm_ops' for column in COLUMNS)
    op.execute(f'CREATE INDEX {INDEX} ON patients USING gin ({keys})')


def downgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.execute(f'DROP INDEX {INDEX}')
