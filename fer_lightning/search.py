"""The seed of a hyperparameter search's sampler, which lets a persistent study continue.

Optuna's samplers start their random state from their seed in every process, so a second launch
of a seeded search over a study kept in sqlite would draw the first launch's settings again,
trial for trial. `${fer_study_seed:seed,storage,study_name}` (conf/hparams_search/) gives a new
study `seed` itself (the same search draws the same trials) and a study that holds N trials
`seed + N`: a continued study draws new settings, reproducibly.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def study_seed(seed: int, storage: str | None, study_name: str) -> int:
    """`seed` plus the number of trials `storage` already holds for `study_name` (0 without a
    storage, or without that study in it)."""
    if not storage:
        return seed
    import optuna  # the search extra's: only a search with a storage gets here

    try:
        held = len(optuna.load_study(study_name=study_name, storage=storage).trials)
    except KeyError:  # no such study yet
        return seed
    log.info("study %s holds %d trials: sampler seed %d", study_name, held, seed + held)
    return seed + held
