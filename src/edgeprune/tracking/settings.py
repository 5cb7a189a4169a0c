"""The ``tracking:`` section of a sweep file: which trackers log each trial, validated once, here beside them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class WandbSettings(_Section):
    """The WandB tracker: offline unless ``mode: online`` (or ``WANDB_MODE``) says otherwise; off when ``CI=true``."""

    project: str | None = None
    entity: str | None = None
    mode: Literal["online", "offline"] | None = None


class MlflowSettings(_Section):
    """The MLflow tracker; its default store is ``sqlite:///RUN_DIR/mlflow.db``."""

    tracking_uri: str | None = None
    experiment: str | None = None


class TrackingSettings(_Section):
    wandb: WandbSettings | None = None
    mlflow: MlflowSettings | None = None
