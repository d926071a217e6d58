"""Each worker records the data root it checked at start: the path as its box sees it and
the root's id, so `run --detach` reuses only a worker that shares this data root and the
workers table can show where each box reads its images.

(The root itself is registered in store_info, key/value rows needing no schema change.)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Batch mode as in 0003: an ADD COLUMN on both backends; SQLite's DROP COLUMN (downgrade) a rebuild.
    with op.batch_alter_table('worker') as batch:
        batch.add_column(sa.Column('data_root', sa.String(), nullable=True))
        batch.add_column(sa.Column('data_root_id', sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('worker') as batch:
        batch.drop_column('data_root_id')
        batch.drop_column('data_root')
