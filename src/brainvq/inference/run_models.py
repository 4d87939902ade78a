"""A run's models: its VQ-VAE and the prior over its codes, loaded from the run directory.

Its own module because every workflow that uses a trained run (evaluate, sample, reconstruct,
encode, anomaly maps and their calibration, predict, the notebook API) asks the run for its models
through this one interface (`load_run_models`), whatever it then does with them.

A run is 2D (a VQ-VAE of slices) or 3D (of volumes, `dims`). A 3D run's prior models the latent
levels of its code volumes, each given the one below (brainvq.inference.codes), so its levels
are latent levels: `latent_levels` of them, and `n_levels` = latent_levels x level_downsample
slice levels in a generated subject, and it has no slice prior: its anomaly maps judge code
volumes with the prior of latent levels (`anomaly_prior`). A workflow a 3D run cannot do yet
asks `require_2d`, which refuses in one line naming the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from brainvq.io.bundle import Bundle, load_prior, load_vqvae
from brainvq.run import VQVAE_FOLDER, RunLayout


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
    def dims(self) -> int:
        """2: the VQ-VAE codes slices; 3: volumes."""
        return int(self.vqvae.config.dims)

    @property
    def latent_levels(self) -> int:
        """The prior's levels: slice levels (2D) or latent levels of a code volume (3D)."""
        return int(self.prior.config.n_levels)

    @property
    def level_stride(self) -> int:
        """Slices a latent level: the 3D VQ-VAE's level_downsample; 1 for a 2D run."""
        return int(self.vqvae.config.level_stride)

    @property
    def n_levels(self) -> int:
        """Slice levels of a whole generated subject (0: the prior knows no levels)."""
        return self.latent_levels * self.level_stride

    def require_2d(self, workflow: str) -> None:
        """ValueError in one line, naming the run, when it is 3D and `workflow` takes 2D runs
        only."""
        require_2d(self.vqvae, workflow)

    @property
    def slice_prior(self) -> Bundle:
        """The prior that judges and draws one slice on its own (anomaly maps, healing, code
        NLL, their calibration, single-slice samples): the run's one prior. A prior of whole
        subjects serves this job too when it was trained with half its maps alone
        (`neighbour_dropout: 0.5`, the default): alone it is then about as good as a prior of
        single slices trained as long (measured in docs/subjects.md, "One prior for both
        jobs"), so a second prior would cost its training minutes for little. A 3D run's prior
        models latent levels, not slices: it has none (ValueError, `require_2d`)."""
        self.require_2d("the slice prior (healing and drawing single slices)")
        return self.prior

    @property
    def anomaly_prior(self) -> Bundle:
        """The prior whose NLL and draws make the anomaly maps (and key their calibrations):
        a 2D run's slice prior, which judges a slice on its own; a 3D run's prior of latent
        levels, which judges each latent level of a code volume given the one below
        (brainvq.inference.volume_anomaly)."""
        return self.prior if self.dims == 3 else self.slice_prior


def require_2d(vqvae: Bundle, workflow: str) -> None:
    """ValueError in one line when the VQ-VAE bundle `vqvae` is 3D and `workflow` takes 2D
    models only, naming the run (or the bundle, when it is not in a run)."""
    if vqvae.config.dims == 3:
        folder = Path(vqvae.path)
        where = (
            f"the run at {folder.parent.parent}"
            if folder.name == VQVAE_FOLDER
            else f"the model at {folder}"
        )
        raise ValueError(
            f"{workflow} works on 2D runs only for now; {where} has a 3D VQ-VAE (vqvae.dims: 3)"
        )


def load_run_models(run_dir: str | Path) -> RunModels:
    """RUN/vqvae/VQVAE_Model and RUN/prior/PixelCNN_Model."""
    layout = RunLayout(run_dir)
    return RunModels(
        vqvae=load_vqvae(layout.bundle("vqvae")), prior=load_prior(layout.bundle("prior"))
    )
