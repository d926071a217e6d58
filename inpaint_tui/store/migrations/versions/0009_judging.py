"""Blind pairwise judging: studies, their trials (a sample and two runs, in the order shown)
and each rater's judgements.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

SEED = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        'study',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('question', sa.String(), nullable=False),
        sa.Column('run_ids', sa.JSON(), nullable=False),
        sa.Column('seed', SEED, nullable=False),
        sa.Column('raters_per_trial', sa.Integer(), nullable=False),
        sa.Column('command', sa.String(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        'study_trial',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('study_id', sa.Integer(), sa.ForeignKey('study.id', ondelete='CASCADE'), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('sample_id', sa.Integer(), sa.ForeignKey('sample.id', ondelete='RESTRICT'), nullable=False),
        sa.Column('left_run_id', sa.Integer(), sa.ForeignKey('run.id', ondelete='RESTRICT'), nullable=False),
        sa.Column('right_run_id', sa.Integer(), sa.ForeignKey('run.id', ondelete='RESTRICT'), nullable=False),
        sa.UniqueConstraint('study_id', 'position', name='uq_study_trial'),
    )
    op.create_index('ix_study_trial_study_id', 'study_trial', ['study_id'])
    op.create_table(
        'judgement',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('study_id', sa.Integer(), sa.ForeignKey('study.id', ondelete='CASCADE'), nullable=False),
        sa.Column('trial_id', sa.Integer(), sa.ForeignKey('study_trial.id', ondelete='CASCADE'), nullable=False),
        sa.Column('rater', sa.String(), nullable=False),
        sa.Column('outcome', sa.String(), nullable=False),
        sa.Column('shown_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('answered_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('seconds', sa.Float(), nullable=False),
        sa.Column('simulated', sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.UniqueConstraint('trial_id', 'rater', name='uq_judgement'),
    )
    op.create_index('ix_judgement_study_id', 'judgement', ['study_id'])
    op.create_index('ix_judgement_trial_id', 'judgement', ['trial_id'])


def downgrade() -> None:
    op.drop_table('judgement')
    op.drop_table('study_trial')
    op.drop_table('study')
