"""Each training stage's objective: the validation metric its best epoch is chosen by, and
which way is better. The checkpoint that becomes the bundle, the tuning study's direction and
every trial's reported value all read this one table, so they cannot disagree."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Objective:
    """A stage's validation metric (as its LightningModule logs it every validation epoch) and
    whether higher ("max") or lower ("min") is better."""

    metric: str
    mode: str

    @property
    def direction(self) -> str:
        """The same in Optuna's words: "maximize" or "minimize"."""
        return "maximize" if self.mode == "max" else "minimize"

    def better(self, a: float, b: float) -> float:
        """The better of two values."""
        return max(a, b) if self.mode == "max" else min(a, b)


OBJECTIVES = {
    "vqvae": Objective("val/ssim", "max"),
    "prior": Objective("val/nll_bits", "min"),
}
