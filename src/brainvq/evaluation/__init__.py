"""Measuring a run, and what its measures need.

- A run's models: reconstruction (SSIM, PSNR, MAE, code usage of a VQ-VAE), prior (bits per code
  and the quality of what it draws), generation_metrics (Frechet distance in level-classifier
  features, level accuracy, sharpness, memorisation) with the classifier it uses
  (level_classifier), and consistency (whether a whole subject's adjacent slices are of one
  brain: adjacent-slice SSIM and a slice pair classifier); both classifiers train by one loop
  (classifier_training).
- Anomaly maps: thresholds with a stated false-positive rate (conformal, anomaly_calibration),
  the slice and scan decisions that follow a map (anomaly_decisions), whether a calibration
  applies to a scan (calibration_shift), and what the benchmarks need: synthetic lesions,
  baselines and metrics (anomaly_benchmark).
- Synthetic scans with the truth known, for measuring registration and anomaly maps on heads as
  users have them (synthetic_anatomy, synthetic_scans).
"""
