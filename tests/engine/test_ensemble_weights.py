"""Ensemble selection on validation: weights that make the mean at least as accurate as the best member there."""

from __future__ import annotations

import numpy as np
import pytest

from engine.ensemble_weights import ROUNDS, fit_mixture_weights, mixture_accuracy


def _log_probabilities(rng: np.random.Generator, labels: np.ndarray, classes: int, skill: float,
                       sharpness: float = 1.0) -> np.ndarray:
    """A member that gives the true class ``skill`` more logit than noise (higher skill: more often right), its
    logits multiplied by ``sharpness`` (above 1: over-confident)."""
    logits = rng.normal(size=(len(labels), classes))
    logits[np.arange(len(labels)), labels] += skill
    logits *= sharpness
    return logits - np.log(np.exp(logits).sum(1, keepdims=True))


def _mean_accuracies(members: list[np.ndarray], labels: np.ndarray) -> tuple[float, list[float]]:
    weights = fit_mixture_weights(members, labels)
    assert weights.sum() == pytest.approx(1) and weights.min() >= 0
    assert any(np.allclose(weights * k, np.round(weights * k)) for k in range(1, ROUNDS + 1))  # counts out of k
    singles = [mixture_accuracy(members, labels, one) for one in np.eye(len(members))]
    return mixture_accuracy(members, labels, weights), singles


def test_the_stronger_member_gets_more_weight_and_the_mean_is_as_accurate_as_it() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    members = [_log_probabilities(rng, labels, 3, skill) for skill in (0.5, 3.0)]
    assert fit_mixture_weights(members, labels)[1] > 0.7
    weighted, singles = _mean_accuracies(members, labels)
    assert weighted >= max(singles)


def test_an_under_confident_member_that_is_right_is_not_outvoted() -> None:
    """The case likelihood weights get wrong: an over-confident member that makes mistakes against a timid one
    that makes none (a label-smoothed head whose temperature could not be fitted)."""
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 60)
    timid = np.log(np.where(np.eye(3)[labels] == 1, 0.5, 0.25))  # right every time, at 50 %
    bold = _log_probabilities(rng, labels, 3, 2.0, sharpness=5.0)
    weighted, singles = _mean_accuracies([bold, timid], labels)
    assert singles == [pytest.approx(singles[0]), 1.0] and singles[0] < 0.95
    assert weighted == 1.0


def test_three_members_and_the_equal_fallback_without_photos() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 4, 200)
    members = [_log_probabilities(rng, labels, 4, skill) for skill in (1.0, 2.0, 2.0)]
    weighted, singles = _mean_accuracies(members, labels)
    assert weighted >= max(singles) and weighted > mixture_accuracy(members, labels, [1 / 3] * 3) - 0.02
    empty = np.zeros((0, 2))
    assert fit_mixture_weights([empty, empty], []).tolist() == [0.5, 0.5]
