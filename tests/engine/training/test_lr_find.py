"""The learning-rate finder sweeps real data and suggests a finite rate below the point where the loss blows up."""

import json
import math
from pathlib import Path

import pytest

from engine.training.config import TrainConfig
from engine.training.lr_find import find_learning_rate, save_lr_find, suggest_learning_rate


def test_lr_find_on_sample_data_suggests_a_finite_rate_and_saves_the_curve(sample_data: Path, tmp_path: Path) -> None:
    result = find_learning_rate(sample_data, TrainConfig(batch_size=8), steps=40, end_lr=10.0)
    assert len(result.learning_rates) == len(result.losses) == len(result.smoothed) >= 20
    assert result.learning_rates == sorted(result.learning_rates)
    assert math.isfinite(result.suggestion) and result.learning_rates[0] < result.suggestion < 10.0
    assert max(result.smoothed) > 1.3 * min(result.smoothed), "the sweep went far enough to see the loss rise"
    json_path, png_path = save_lr_find(result, tmp_path / "out")
    assert json.loads(json_path.read_text())["suggestion"] == result.suggestion
    assert png_path.read_bytes().startswith(b"\x89PNG")


def test_suggestion_is_a_tenth_of_the_rate_where_the_loss_starts_to_rise() -> None:
    rates = [10.0 ** (e / 4) for e in range(-24, 1)]  # 1e-6 .. 1, four per decade
    falling = [2.0 - 0.1 * i for i in range(16)] + [0.48, 0.52, 0.6, 0.9, 1.5, 3.0, 5.0, 8.0, 9.0]
    suggestion, steepest = suggest_learning_rate(rates, falling)
    assert suggestion == pytest.approx(rates[19] / 10)  # 0.9 is the first value over 1.3 x 0.48
    assert steepest <= rates[16]
    flat = [0.33] * 15 + [0.34, 0.35, 0.5, 1.0, 2.0, 4.0, 6.0, 8.0, 9.0, 9.5]  # already fitted: it only rises
    assert suggest_learning_rate(rates, flat)[0] == pytest.approx(rates[17] / 10)


def test_feature_extract_has_no_rate_to_find(sample_data: Path) -> None:
    with pytest.raises(ValueError, match="closed form"):
        find_learning_rate(sample_data, TrainConfig(strategy="feature-extract"))
