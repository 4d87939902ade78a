"""What users run: the `brainvq` command and the typed functions it calls, one workflow per
module that a notebook can call too.

- The front doors: the command (cli; commands/, one module per command that parses its flags,
  calls a typed function and prints), the flags they share (flags), the `train.py` and
  `predict.py` entry points (entry_points), and a log kept to what brainvq did (quiet_log).
- A run and what every workflow asks of it: its data, source kind and place in the reference
  space (run_data), the configuration it starts from (presets), the files its report is drawn
  from (run_files).
- Training and measuring: the pipeline (train, evaluate, report), predict, tune (its files:
  tune_files).
- Using a run: reconstruct and encode (reconstruct), sample and complete to a folder (writers),
  whole synthetic subjects as volumes (subjects), export to ONNX (export), prune.
- Scans brought to a run: found, read and aligned to its frame (scans); answers written in each
  scan's own space (volume_files).
- Anomaly maps: the workflow (anomaly), what it scores (anomaly_inputs), a scan's answer
  (anomaly_scans), its calibration and where calibrations live (anomaly_calibration,
  calibration_store), the files it writes (anomaly_files).
"""
