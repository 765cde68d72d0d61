from pathlib import Path

from desktop import paths
from desktop.settings import MAX_RECENT, AppSettings


def test_recent_items_are_newest_first_unique_and_capped(settings: AppSettings, tmp_path: Path) -> None:
    for index in range(MAX_RECENT + 2):
        settings.add_recent("dataset", tmp_path / str(index))
    settings.add_recent("run", tmp_path / "3")
    settings.add_recent("dataset", tmp_path / "5")
    recent = settings.recent()
    assert recent[:2] == [("dataset", str(tmp_path / "5")), ("run", str(tmp_path / "3"))]
    assert len(recent) == MAX_RECENT and len(set(recent)) == MAX_RECENT


def test_values_round_trip_and_bad_ones_fall_back(settings: AppSettings, tmp_path: Path) -> None:
    settings.set("train/options", {"epochs": 3, "lr": 0.01})
    assert settings.get("train/options") == {"epochs": 3, "lr": 0.01}
    settings.qsettings.setValue("broken", "{not json")
    assert settings.get("broken", "default") == "default"
    settings.remember_folder("dataset", tmp_path)
    assert settings.last_folder("dataset") == str(tmp_path)
    settings.remember_folder("model", tmp_path / "gone" / "model.onnx")
    assert settings.last_folder("model") == str(Path.home())  # a folder that no longer exists


def test_runs_and_sample_data_get_fresh_folders_in_the_user_data_folder() -> None:
    first, second = paths.new_run_folder(), paths.new_run_folder()
    assert first != second and first.parent == second.parent == paths.user_data_folder() / "runs"
    sample = paths.new_sample_data_folder()
    (sample / "circles").mkdir(parents=True)
    assert paths.new_sample_data_folder() != sample
