"""Seeds as 64-bit integers: a run seed goes up to 2^63-1 and per-sample seeds are 63-bit
(engine.seeding), which overflowed PostgreSQL's 32-bit INTEGER.

SQLite's INTEGER already holds 64 bits, so there the schema stays as it is (the models
declare SQLite's seeds as INTEGER too): rebuilding the run table only to rename its type
would copy every run for nothing.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

SEEDS = (('run', 'seed'), ('run_sample', 'seed'))


def upgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        return
    for table, column in SEEDS:
        op.alter_column(table, column, type_=sa.BigInteger(), existing_type=sa.Integer(), existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        return
    for table, column in SEEDS:
        op.alter_column(table, column, type_=sa.Integer(), existing_type=sa.BigInteger(), existing_nullable=False)
