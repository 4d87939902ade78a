"""`brainvq anomaly`: anomaly maps of a user's slices and scans, and the slice and scan
decisions that follow them, thresholded by a calibration on healthy slices.

- find: the workflow (`find_anomalies`, `check_options` and its result, AnomalyResult): load,
  level, calibrate, map and decide.
- inputs: what it scores, the input's slices at the run's working size and their levels
  (volumes aligned to the run's frame by brainvq.app.scans).
- calibration: the run's thresholds, calibrated on healthy slices, reused, made when missing
  (`calibrate_run`, `resolve_calibration`); calibration_store: where calibrations live, under
  which key.
- scan_answers: a scan's answer, its slices' decisions combined and whether the calibration
  applies to it.
- files: what it writes to a folder (`write_anomalies`), volumes in each scan's own space
  (brainvq.app.volume_files).
"""
