"""The four pages of the main window: data, train, evaluate, predict."""
