"""SQLAlchemy 2 typed ORM models of the store: experiments, trials, curve points, artifacts."""

from __future__ import annotations

import datetime as _dt
from typing import Any, Optional

from sqlalchemy import (JSON, Float, ForeignKey, Index, Integer, LargeBinary, String, Text,
                        UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from memnas.records import TRIAL_STATUSES

__all__ = ["ArtifactRow", "Base", "CurvePointRow", "ExperimentRow", "TRIAL_STATUSES",
           "TrialRow", "VersionInfo"]


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class VersionInfo(Base):
    """Single row holding the schema version, checked whenever a store is opened.

    Alembic's revision is in its own table (see `memnas.store._schema`); this row stays
    the number every memnas reads, those from before Alembic included.
    """

    __tablename__ = "memnas_version"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    schema_version: Mapped[int] = mapped_column(Integer)
    memnas_version: Mapped[str] = mapped_column(String(32))


class ExperimentRow(Base):
    __tablename__ = "experiments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="created")
    space: Mapped[dict[str, Any]] = mapped_column(JSON)
    space_hash: Mapped[str] = mapped_column(String(64))
    algorithm: Mapped[dict[str, Any]] = mapped_column(JSON)
    evaluator: Mapped[dict[str, Any]] = mapped_column(JSON)
    objectives: Mapped[dict[str, Any]] = mapped_column(JSON)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    fingerprint: Mapped[str] = mapped_column(String(64), default="", index=True)
    driver: Mapped[Optional[str]] = mapped_column(String(200), nullable=True)
    heartbeat_at: Mapped[Optional[_dt.datetime]] = mapped_column(nullable=True)
    created_at: Mapped[_dt.datetime] = mapped_column(default=_now)
    updated_at: Mapped[_dt.datetime] = mapped_column(default=_now)


class TrialRow(Base):
    __tablename__ = "trials"
    __table_args__ = (
        UniqueConstraint("experiment_id", "number", name="uq_trial_number"),
        Index("ix_trials_experiment_status", "experiment_id", "status"),
        Index("ix_trials_sym_hash", "sym_hash"),
        Index("ix_trials_fn_hash", "fn_hash"),
        Index("ix_trials_finished_at", "finished_at"),  # schema version 2
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    dna: Mapped[list[Any]] = mapped_column(JSON)
    decisions: Mapped[dict[str, Any]] = mapped_column(JSON)
    candidate: Mapped[str] = mapped_column(Text)
    summary: Mapped[str] = mapped_column(Text, default="")
    sym_hash: Mapped[str] = mapped_column(String(64))
    fn_hash: Mapped[Optional[str]] = mapped_column(String(64), nullable=True)
    cached_from: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)  # a trial id
    cache_kind: Mapped[Optional[str]] = mapped_column(String(16), nullable=True)  # duplicate|canonical|functional|hit|attached
    saved_time: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    seed: Mapped[int] = mapped_column(Integer, default=0)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    costs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[Optional[str]] = mapped_column(Text, nullable=True)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    node: Mapped[Optional[str]] = mapped_column(String(200), nullable=True)
    wall_time: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    created_at: Mapped[_dt.datetime] = mapped_column(default=_now)
    started_at: Mapped[Optional[_dt.datetime]] = mapped_column(nullable=True)
    heartbeat_at: Mapped[Optional[_dt.datetime]] = mapped_column(nullable=True)
    finished_at: Mapped[Optional[_dt.datetime]] = mapped_column(nullable=True)
    # schema version 4: multi-fidelity (see migration 0004_trial_budgets)
    budget: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON, nullable=True)
    budget_key: Mapped[Optional[str]] = mapped_column(String(64), nullable=True)
    parent_id: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)  # a trial id


class CurvePointRow(Base):
    __tablename__ = "curve_points"
    __table_args__ = (UniqueConstraint("trial_id", "step", "name", name="uq_curve_point"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"), index=True)
    step: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(100))
    value: Mapped[float] = mapped_column(Float)


class ArtifactRow(Base):
    """A trial's artifact: ``input`` (from the algorithm) or ``output`` (from the evaluator).

    The payload is stored by value as `.npz` bytes (arrays) with JSON for the rest, never
    pickled. Added after schema version 1 was fixed: the baseline migration adds it to
    the first stores, which lack it, when they are opened for writing.
    """

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("trial_id", "kind", name="uq_artifact_trial_kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    keys: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[_dt.datetime] = mapped_column(default=_now)


class FeedbackRow(Base):
    """When a trial was fed back to the algorithm: ``seq`` is the position of that call
    among all the calls (proposals and feedbacks) the search made to its algorithm.

    A trial's number is the order it was proposed in; with these rows a resumed search
    replays the algorithm's calls in their original order (see `memnas.runner.replay`).
    """

    __tablename__ = "feedback"
    __table_args__ = (UniqueConstraint("experiment_id", "seq", name="uq_feedback_seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
