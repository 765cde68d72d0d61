"""The names of a run folder's files, in a module free of torch: the torch-free readers (run summaries, speed
figures) and ``engine.training.run_folder``, which writes them, share one definition."""

RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
EVALUATION_FILE = "evaluation.json"
MODEL_FILE = "model.onnx"  # where export writes by default
