"""Workers, the run queue (claims, cancellation, progress), sweeps, per-sample attempts and animations.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sweep',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(), nullable=True),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('command', sa.String(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('worker',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(), nullable=False),
    sa.Column('host', sa.String(), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=True),
    sa.Column('device', sa.String(), nullable=True),
    sa.Column('status', sa.String(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.Column('model', sa.String(), nullable=True),
    sa.Column('log_path', sa.String(), nullable=True),
    sa.Column('started_at', sa.Float(), nullable=False),
    sa.Column('heartbeat_at', sa.Float(), nullable=False),
    sa.Column('stopped_at', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('worker', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_worker_status'), ['status'], unique=False)

    op.create_table('run_progress',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('worker_id', sa.Integer(), nullable=True),
    sa.Column('phase', sa.String(), nullable=False),
    sa.Column('samples_done', sa.Integer(), nullable=False),
    sa.Column('sample_count', sa.Integer(), nullable=False),
    sa.Column('sample_position', sa.Integer(), nullable=True),
    sa.Column('sample_name', sa.String(), nullable=True),
    sa.Column('step', sa.Integer(), nullable=False),
    sa.Column('steps', sa.Integer(), nullable=False),
    sa.Column('steps_per_second', sa.Float(), nullable=True),
    sa.Column('seconds_per_sample', sa.Float(), nullable=True),
    sa.Column('preview_path', sa.String(), nullable=True),
    sa.Column('preview_step', sa.Integer(), nullable=True),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id')
    )
    op.create_table('sweep_run',
    sa.Column('sweep_id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('point', sa.JSON(), nullable=False),
    sa.Column('reused', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['sweep_id'], ['sweep.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('sweep_id', 'run_id')
    )
    with op.batch_alter_table('run', schema=None) as batch_op:
        batch_op.add_column(sa.Column('options', sa.JSON(), server_default='{}', nullable=False))
        batch_op.add_column(sa.Column('worker_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('claim', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('cancel_requested', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.create_index(batch_op.f('ix_run_worker_id'), ['worker_id'], unique=False)

    with op.batch_alter_table('run_sample', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attempts', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('animation_path', sa.String(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('run_sample', schema=None) as batch_op:
        batch_op.drop_column('animation_path')
        batch_op.drop_column('attempts')

    with op.batch_alter_table('run', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_run_worker_id'))
        batch_op.drop_column('cancel_requested')
        batch_op.drop_column('claim')
        batch_op.drop_column('worker_id')
        batch_op.drop_column('options')

    op.drop_table('sweep_run')
    op.drop_table('run_progress')
    with op.batch_alter_table('worker', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_worker_status'))

    op.drop_table('worker')
    op.drop_table('sweep')
