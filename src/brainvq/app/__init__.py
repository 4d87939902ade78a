"""What users run: the pipeline, `predict`, the to-folder writers, the `brainvq` command and its
subcommands, and the `train.py` / `predict.py` entry points."""
