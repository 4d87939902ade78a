"""What users run: the `brainvq` command and the typed functions it calls, one workflow per
module (or sub-package) that a notebook can call too.

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
- Anomaly maps (anomaly/): the workflow (anomaly.find), what it scores (anomaly.inputs), a
  scan's answer (anomaly.scan_answers), its calibration and where calibrations live
  (anomaly.calibration, anomaly.calibration_store), the files it writes (anomaly.files).

A feature of one or two modules keeps them here (tune and tune_files; scans and volume_files,
which anomaly and reconstruct both use); one of more than two is a sub-package (anomaly/,
commands/).
"""
