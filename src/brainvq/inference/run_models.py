"""A run's models: its VQ-VAE and the prior over its codes, loaded from the run directory.

Its own module because every workflow that uses a trained run (evaluate, sample, reconstruct,
encode, anomaly maps and their calibration, predict, the notebook API) asks the run for its models
through this one interface (`load_run_models`), whatever it then does with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from brainvq.io.bundle import Bundle, load_prior, load_vqvae
from brainvq.run import RunLayout


@dataclass(frozen=True)
class RunModels:
    """A run's two models: the VQ-VAE and the prior over its codes."""

    vqvae: Bundle
    prior: Bundle

    def __post_init__(self) -> None:
        k_prior, k_vqvae = self.prior.config.codebook_size, self.vqvae.config.codebook_size
        if k_prior != k_vqvae:
            raise ValueError(
                f"the prior at {self.prior.path} models {k_prior} codes but the VQ-VAE at "
                f"{self.vqvae.path} has {k_vqvae}; retrain the prior on this VQ-VAE's codes"
            )

    @property
    def latent_hw(self) -> tuple[int, int]:
        side = self.vqvae.config.latent_size
        return (side, side)

    @property
    def n_levels(self) -> int:
        return int(self.prior.config.n_levels)

    @property
    def slice_prior(self) -> Bundle:
        """The prior that judges and draws one slice on its own (anomaly maps, healing, code
        NLL, their calibration, single-slice samples): the run's one prior. A prior of whole
        subjects serves this job too when it was trained with half its maps alone
        (`neighbour_dropout: 0.5`, the default): alone it is then about as good as a prior of
        single slices trained as long (measured in docs/subjects.md, "One prior for both
        jobs"), so a second prior would cost its training minutes for little."""
        return self.prior


def load_run_models(run_dir: str | Path) -> RunModels:
    """RUN/vqvae/VQVAE_Model and RUN/prior/PixelCNN_Model."""
    layout = RunLayout(run_dir)
    return RunModels(
        vqvae=load_vqvae(layout.bundle("vqvae")), prior=load_prior(layout.bundle("prior"))
    )
