"""A key/value table about the database itself: which inpaint-tui version last migrated it.

An older inpaint-tui that meets a schema revision it does not know reads
`schema_written_by` here to say which version wrote the database (the revision id alone
tells a researcher nothing). Later keys about the store as a whole go here too.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('store_info',
    sa.Column('key', sa.String(), nullable=False),
    sa.Column('value', sa.String(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )


def downgrade() -> None:
    op.drop_table('store_info')
