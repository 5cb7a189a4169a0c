"""Telling a study about a trial that someone else may have finished already: the agents' one idempotence rule.

With at-least-once delivery and a janitor, two parties can race to finish the same trial (a job delivered
twice, a janitor failing a trial whose result is arriving). Both storages make the finish itself atomic —
RDBStorage updates the trial row ``FOR UPDATE``, the journal replays one finish and rejects the rest — so
exactly one wins and the losers get an error. :func:`finish_once` turns that error into "already finished"
and lets every other error through.
"""

from __future__ import annotations

from collections.abc import Callable

from optuna.exceptions import UpdateFinishedTrialError

from edgeprune.sweep.engine import SweepStudy


def is_finished(study: SweepStudy, number: int) -> bool:
    return study.trials()[number].state.is_finished()


def finish_once(study: SweepStudy, number: int, action: Callable[[], object]) -> bool:
    """Run ``action`` (a tell, fail or attribute write on trial ``number``); False if the trial was finished by
    someone else first. ``study.tell`` refuses a finished trial with ValueError, the storage with
    UpdateFinishedTrialError; either one only counts as "finished" when the trial really is."""
    try:
        action()
    except (UpdateFinishedTrialError, ValueError):
        if is_finished(study, number):
            return False
        raise
    return True
