"""A command's log says what brainvq did: third-party lines that are not the user's concern
are left out of it, in this one place.

What is left out, each matched by its own text so that nothing else goes with it:
- Lightning's advertisement for its cloud logger ("💡 Tip: For seamless cloud logging ...
  try installing [litlogger]"), an INFO line every Trainer prints when it has no LitLogger;
- torch's deprecation warning that Lightning's own pytree helper still builds a `LeafSpec`
  ("`isinstance(treespec, LeafSpec)` is deprecated"): a note to Lightning's developers, which
  no brainvq user can act on.

Everything else stays: Lightning's other lines (the device and precision it trains on, why a
fit stopped), every other warning of Lightning or torch, and brainvq's own warnings. The front
doors (`brainvq`, `python train.py`, `python predict.py`) call `quiet_third_party_lines` as they
start; a DDP process that Lightning launches runs the same front door, so it is quiet too.
Importing this module imports neither Lightning nor torch.
"""

from __future__ import annotations

import logging
import warnings

# Lightning's rank-zero messages go through one of these loggers (whichever of lightning.fabric
# and lightning.pytorch was imported last set lightning_utilities' logger).
RANK_ZERO_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
)
LITLOGGER_TIP = "💡 Tip: For seamless cloud logging"
LEAFSPEC_DEPRECATION = r"`isinstance\(treespec, LeafSpec\)` is deprecated"


class DropAdvertisement(logging.Filter):
    """Drops Lightning's litlogger tip, and nothing else."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(LITLOGGER_TIP)


DROP_ADVERTISEMENT = DropAdvertisement()


def quiet_third_party_lines() -> None:
    """Leave Lightning's litlogger tip and torch's LeafSpec deprecation out of this process's
    output (both described in the module docstring). Calling it again changes nothing."""
    for name in RANK_ZERO_LOGGERS:
        logging.getLogger(name).addFilter(DROP_ADVERTISEMENT)  # once: addFilter keeps one copy
    warnings.filterwarnings("ignore", message=LEAFSPEC_DEPRECATION)  # FutureWarning in torch 2.13
