from desktop.training_history import SMOOTHING, TrainingHistory


def test_epochs_and_smoothed_batches_line_up_on_the_epoch_axis() -> None:
    history = TrainingHistory.from_metrics([
        {"epoch": 0, "train_loss": 1.0, "train_accuracy": 0.5, "val_loss": 1.1, "val_accuracy": 0.4}])
    history.add_batch(1, 1, 2, 2.0)
    history.add_batch(1, 2, 2, 1.0)
    history.add_epoch(1, 0.9, 0.6, 1.0, 0.5)
    assert history.epochs == [0, 1] and history.val_accuracy == [0.4, 0.5]
    assert history.batch_x == [0.5, 1.0]
    assert history.batch_loss == [2.0, SMOOTHING * 1.0 + (1 - SMOOTHING) * 2.0]


def test_truncate_forgets_the_epochs_a_resumed_run_repeats() -> None:
    history = TrainingHistory()
    for epoch in range(4):
        if epoch:
            history.add_batch(epoch, 1, 1, 1.0)
        history.add_epoch(epoch, 1.0, 0.5, 1.0, 0.5)
    history.truncate(2)
    assert history.epochs == [0, 1] and len(history.train_loss) == 2
    assert history.batch_x == [1.0]
