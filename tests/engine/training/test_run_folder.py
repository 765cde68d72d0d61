"""Helpers that read a run's records."""

from engine.training import run_folder as rf


def test_fine_tune_throughput_is_total_images_over_total_seconds() -> None:
    records = [{"phase": "head", "images_per_second": 1000.0, "seconds": 1.0},
               {"phase": "fine-tune", "images_per_second": 10.0, "seconds": 2.0},  # computed a view: slow
               {"phase": "fine-tune", "images_per_second": 100.0, "seconds": 1.0}]
    assert rf.fine_tune_throughput(records) == 40.0  # (20 + 100) images / 3 s, not the mean of the rates (55)
    assert rf.fine_tune_throughput(records[:1]) is None
