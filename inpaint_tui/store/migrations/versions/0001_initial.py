"""Initial schema: samples, sample sets, runs, per-sample outcomes, metrics.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('run',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('technique', sa.String(), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('model', sa.String(), nullable=False),
    sa.Column('seed', sa.Integer(), nullable=False),
    sa.Column('steps', sa.Integer(), nullable=False),
    sa.Column('guidance', sa.Float(), nullable=False),
    sa.Column('negative_prompt', sa.String(), nullable=False),
    sa.Column('sample_set', sa.String(), nullable=False),
    sa.Column('status', sa.String(), nullable=False),
    sa.Column('error', sa.String(), nullable=True),
    sa.Column('config_hash', sa.String(), nullable=False),
    sa.Column('versions', sa.JSON(), nullable=False),
    sa.Column('git_commit', sa.String(), nullable=True),
    sa.Column('device', sa.String(), nullable=True),
    sa.Column('command', sa.String(), nullable=True),
    sa.Column('eval_config', sa.JSON(), nullable=False),
    sa.Column('sample_count', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_run_config_hash'), 'run', ['config_hash'], unique=False)
    op.create_index(op.f('ix_run_sample_set'), 'run', ['sample_set'], unique=False)
    op.create_index(op.f('ix_run_status'), 'run', ['status'], unique=False)
    op.create_index(op.f('ix_run_technique'), 'run', ['technique'], unique=False)
    op.create_table('sample',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(), nullable=False),
    sa.Column('name', sa.String(), nullable=False),
    sa.Column('prompt', sa.String(), nullable=False),
    sa.Column('image_path', sa.String(), nullable=False),
    sa.Column('mask_path', sa.String(), nullable=False),
    sa.Column('reference_path', sa.String(), nullable=True),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(), nullable=False),
    sa.Column('meta', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_sample_key'), 'sample', ['key'], unique=True)
    op.create_index(op.f('ix_sample_name'), 'sample', ['name'], unique=False)
    op.create_table('sample_set',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_sample_set_name'), 'sample_set', ['name'], unique=True)
    op.create_table('run_sample',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('sample_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('seed', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(), nullable=False),
    sa.Column('image_path', sa.String(), nullable=True),
    sa.Column('width', sa.Integer(), nullable=True),
    sa.Column('height', sa.Integer(), nullable=True),
    sa.Column('error', sa.String(), nullable=True),
    sa.Column('traceback', sa.String(), nullable=True),
    sa.Column('seconds', sa.Float(), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['sample_id'], ['sample.id'], ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('run_id', 'sample_id', name='uq_run_sample')
    )
    op.create_index(op.f('ix_run_sample_run_id'), 'run_sample', ['run_id'], unique=False)
    op.create_table('sample_set_member',
    sa.Column('set_id', sa.Integer(), nullable=False),
    sa.Column('sample_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['sample_id'], ['sample.id'], ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['set_id'], ['sample_set.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('set_id', 'sample_id')
    )
    op.create_table('metric',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('run_sample_id', sa.Integer(), nullable=True),
    sa.Column('name', sa.String(), nullable=False),
    sa.Column('value', sa.Float(), nullable=True),
    sa.Column('std', sa.Float(), nullable=True),
    sa.Column('ci_low', sa.Float(), nullable=True),
    sa.Column('ci_high', sa.Float(), nullable=True),
    sa.Column('n', sa.Integer(), nullable=True),
    sa.Column('note', sa.String(), nullable=True),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_sample_id'], ['run_sample.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('run_id', 'run_sample_id', 'name', name='uq_metric')
    )
    op.create_index(op.f('ix_metric_name'), 'metric', ['name'], unique=False)
    op.create_index(op.f('ix_metric_run_id'), 'metric', ['run_id'], unique=False)
    op.create_index(op.f('ix_metric_run_sample_id'), 'metric', ['run_sample_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_metric_run_sample_id'), table_name='metric')
    op.drop_index(op.f('ix_metric_run_id'), table_name='metric')
    op.drop_index(op.f('ix_metric_name'), table_name='metric')
    op.drop_table('metric')
    op.drop_table('sample_set_member')
    op.drop_index(op.f('ix_run_sample_run_id'), table_name='run_sample')
    op.drop_table('run_sample')
    op.drop_index(op.f('ix_sample_set_name'), table_name='sample_set')
    op.drop_table('sample_set')
    op.drop_index(op.f('ix_sample_name'), table_name='sample')
    op.drop_index(op.f('ix_sample_key'), table_name='sample')
    op.drop_table('sample')
    op.drop_index(op.f('ix_run_technique'), table_name='run')
    op.drop_index(op.f('ix_run_status'), table_name='run')
    op.drop_index(op.f('ix_run_sample_set'), table_name='run')
    op.drop_index(op.f('ix_run_config_hash'), table_name='run')
    op.drop_table('run')
