"""TrainConfig round-trips through run.json and refuses edited values instead of half-loading them."""

import pytest

from engine.training.config import TrainConfig


def test_round_trip_keeps_every_field_and_its_type() -> None:
    config = TrainConfig(epochs=3, lr=0.01, compile=True, augment_views=4, weights_file="w.pth")
    again = TrainConfig.from_dict(config.to_dict())
    assert again == config and again.compile is True


@pytest.mark.parametrize(("name", "value"), [
    ("compile", 1), ("compile", "yes"), ("epochs", True), ("epochs", "many"), ("lr", False), ("augment", 3),
])
def test_wrong_types_are_refused(name: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"option '{name}' has an invalid value"):
        TrainConfig.from_dict({name: value})


def test_unknown_keys_and_out_of_range_values_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown training options: turbo"):
        TrainConfig.from_dict({"turbo": True})
    with pytest.raises(ValueError, match="augment_views"):
        TrainConfig(augment_views=-1)
    with pytest.raises(ValueError, match="early_stopping"):
        TrainConfig(early_stopping=-2)


def test_integers_are_accepted_for_float_options() -> None:
    assert TrainConfig.from_dict({"lr": 1}).lr == 1.0


def test_a_compiled_run_is_refused_in_the_bundle_before_any_work(small_data, tmp_path, monkeypatch) -> None:
    """Also a run started with --compile elsewhere and resumed in the bundle (the CLI's check sees no option)."""
    import sys

    from engine.errors import BadInputError
    from engine.training.trainer import train

    monkeypatch.setattr(sys, "frozen", True, raising=False)
    with pytest.raises(BadInputError, match="bundled app"):
        train(small_data, tmp_path / "run", TrainConfig(compile=True))
    assert not (tmp_path / "run").exists()
