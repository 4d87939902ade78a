"""What users run: the `brainvq` command (cli; commands/, each of which parses its flags, calls a
typed function and prints) and the typed functions themselves, one workflow per module that a
notebook can call too: the pipeline, predict, reconstruct/sample/complete to a folder (writers),
the configuration a run starts from (presets), tune, anomaly, export and prune, with the files
they write (run_files, tune_files, anomaly_files); and the `train.py` / `predict.py` entry
points (entry_points)."""
