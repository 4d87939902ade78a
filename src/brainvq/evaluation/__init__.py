"""Scoring a run: reconstruction metrics of the VQ-VAE, the prior's NLL, and the generation
metrics (Frechet distance in level-classifier features, level accuracy, sharpness, memorisation)."""
