"""search: a continued study's sampler draws new settings, a new one the seed's own."""

from __future__ import annotations

import pytest

from fer_lightning.search import study_seed


def test_a_study_in_memory_or_new_gets_the_seed_itself(tmp_path):
    assert study_seed(7, None, "loss_ratios") == 7
    pytest.importorskip("optuna", reason="the search extra is not installed")
    assert study_seed(7, f"sqlite:///{tmp_path / 'study.db'}", "loss_ratios") == 7


def test_a_continued_study_moves_the_seed_on_by_its_trials(tmp_path):
    optuna = pytest.importorskip("optuna", reason="the search extra is not installed")
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="loss_ratios", storage=storage)
    study.optimize(lambda trial: trial.suggest_float("x", 0.0, 1.0), n_trials=3)
    assert study_seed(7, storage, "loss_ratios") == 10
    assert study_seed(7, storage, "another") == 7
