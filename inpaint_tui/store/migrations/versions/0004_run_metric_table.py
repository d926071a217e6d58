"""Per-run metrics in their own table keyed (run_id, name).

Per-run rows used to sit in `metric` with run_sample_id NULL, where UNIQUE(run_id,
run_sample_id, name) never applies (NULLs are distinct), so nothing stopped two rows for one
run's KID. Existing per-run rows move to `run_metric` (the newest row per (run, name) wins,
as the readers used to see it), and `metric.run_sample_id` becomes NOT NULL. The old per-run
columns of `metric` (std, interval, n, note) go: per-sample rows never used them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('run_metric',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(), nullable=False),
    sa.Column('value', sa.Float(), nullable=True),
    sa.Column('std', sa.Float(), nullable=True),
    sa.Column('ci_low', sa.Float(), nullable=True),
    sa.Column('ci_high', sa.Float(), nullable=True),
    sa.Column('n', sa.Integer(), nullable=True),
    sa.Column('note', sa.String(), nullable=True),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'name')
    )
    op.execute(
        "INSERT INTO run_metric (run_id, name, value, std, ci_low, ci_high, n, note) "
        "SELECT run_id, name, value, std, ci_low, ci_high, n, note FROM metric "
        "WHERE id IN (SELECT MAX(id) FROM metric WHERE run_sample_id IS NULL GROUP BY run_id, name)"
    )
    op.execute("DELETE FROM metric WHERE run_sample_id IS NULL")
    with op.batch_alter_table('metric', schema=None) as batch_op:
        batch_op.alter_column('run_sample_id', existing_type=sa.Integer(), nullable=False)
        for column in ('note', 'n', 'ci_high', 'ci_low', 'std'):
            batch_op.drop_column(column)


def downgrade() -> None:
    with op.batch_alter_table('metric', schema=None) as batch_op:
        batch_op.add_column(sa.Column('std', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('ci_low', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('ci_high', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('n', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('note', sa.String(), nullable=True))
        batch_op.alter_column('run_sample_id', existing_type=sa.Integer(), nullable=True)
    op.execute(
        "INSERT INTO metric (run_id, run_sample_id, name, value, std, ci_low, ci_high, n, note) "
        "SELECT run_id, NULL, name, value, std, ci_low, ci_high, n, note FROM run_metric"
    )
    op.drop_table('run_metric')
