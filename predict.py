"""Reconstruct and generate with a trained model: `python predict.py [-m PATH_TO_VQVAE_Model]`.

See README.md. With no -m, the latest run under runs/ is used.
"""

import sys

from brainvq.app.entry_points import predict_main

if __name__ == "__main__":
    sys.exit(predict_main())
