"""How much each member of an ensemble counts: greedy ensemble selection on the validation photos.

An equal vote lets a weaker member pull a stronger one down (two seeds of Lite0 on ultrasound: the equal mean was
below its better member on validation and test). Weights that maximise the validation likelihood instead trust a
confident member over an under-confident one that is right more often (a label-smoothed head whose temperature
could not be fitted because it made no validation mistake got 3 %). So the weights come from ensemble selection
(Caruana et al. 2004, as auto-sklearn builds its ensembles): start from the best member, add members with
replacement, each time the one that makes the mean most accurate on validation (ties: the true classes most
likely), and keep the best mean seen: a weight is how often its member was added, out of at most ROUNDS. Written
by hand: it is a dozen lines of NumPy, and the libraries that have it (auto-sklearn) are built around their own
models.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ROUNDS = 20  # members added at most


def fit_mixture_weights(log_probabilities: Sequence[np.ndarray], labels: Sequence[int]) -> np.ndarray:
    """Weights (non-negative, summing to 1) of the members whose log-probabilities (N x C each, on the same N
    validation photos) are given; equal weights when there are no photos to choose them on."""
    members = len(log_probabilities)
    if not len(labels):
        return np.full(members, 1 / members)
    labels = np.asarray(labels)
    probabilities = [np.exp(np.asarray(lp, dtype=np.float64)) for lp in log_probabilities]
    counts, total = np.zeros(members), np.zeros_like(probabilities[0])
    best_score, best_counts = None, counts
    for added in range(1, ROUNDS + 1):
        candidates = [_score((total + p) / added, labels) for p in probabilities]
        chosen = min(range(members), key=candidates.__getitem__)
        counts, total = counts + np.eye(members)[chosen], total + probabilities[chosen]
        if best_score is None or candidates[chosen] < best_score:
            best_score, best_counts = candidates[chosen], counts
    return best_counts / best_counts.sum()


def _score(probabilities: np.ndarray, labels: np.ndarray) -> tuple[int, float]:
    """(validation mistakes, minus the mean log-probability of the true class): lower is better."""
    mistakes = int((probabilities.argmax(1) != labels).sum())
    true = probabilities[np.arange(len(labels)), labels]
    return mistakes, -float(np.log(np.maximum(true, np.finfo(np.float64).tiny)).mean())


def mixture_accuracy(log_probabilities: Sequence[np.ndarray], labels: Sequence[int],
                     weights: Sequence[float]) -> float:
    """Accuracy of the weighted mean of the members' probabilities on these photos."""
    mean = sum(w * np.exp(np.asarray(lp, dtype=np.float64)) for w, lp in zip(weights, log_probabilities, strict=True))
    return float((np.asarray(mean).argmax(1) == np.asarray(labels)).mean())
