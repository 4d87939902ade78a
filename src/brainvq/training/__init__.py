"""Training with Lightning: the LightningModules (the VQ-VAE, with its optional adversarial
losses, and the prior), the one fit path every stage takes (trainer: make_trainer, fit_stage,
finish_bundle; objectives: what each stage's best epoch is chosen by), the fit functions per
stage, callbacks, the learning-rate schedule, pruning and its fine-tuning, and the pieces of
hyperparameter tuning (search_space, study, tuning)."""
