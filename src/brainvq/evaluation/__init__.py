"""Scoring a run: reconstruction metrics of the VQ-VAE, the prior's NLL, the generation metrics
(Frechet distance in level-classifier features, level accuracy, sharpness, memorisation) and the
level classifier they use; the anomaly maps' thresholds (conformal, anomaly_calibration) and
their benchmark (synthetic lesions, two baselines, AUPRC, Dice, AUROC)."""
