"""Train the whole brainvq pipeline: `python train.py [--data SOURCE] [--out RUN] [flags]`.

The same as `brainvq train all`, with a default data source (OASIS at a default path if present,
else the demo cohort). See README.md.
"""

import sys

from brainvq.app.entry_points import train_main

if __name__ == "__main__":
    sys.exit(train_main())
