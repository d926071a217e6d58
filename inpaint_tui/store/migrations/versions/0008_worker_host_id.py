"""Workers record where their pid means something (kernel boot and PID namespace), so two
boxes or containers sharing a hostname no longer judge each other's pids.

A nullable column: older rows have none and are judged by their heartbeat alone.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('worker', sa.Column('host_id', sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('worker') as batch:  # SQLite before 3.35 cannot drop a column in place
        batch.drop_column('host_id')
