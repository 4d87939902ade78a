"""The subject views name their planes after the anatomy: rows run left-right and columns
posterior-anterior (brainvq.data.planes), so the coronal plane fixes a column and the sagittal
plane a row."""

from __future__ import annotations

import numpy as np

from brainvq.app.subjects import orthogonal_views
from brainvq.data.planes import plane_slices


def test_the_coronal_view_is_the_plane_through_the_middle_column() -> None:
    levels, rows, cols, zoom = 4, 8, 12, 2
    volume = np.zeros((levels, rows, cols), dtype=np.uint8)
    volume[:, :, cols // 2] = 255  # one coronal plane, the middle column's
    views = orthogonal_views(volume, stretch=1.0, zoom=zoom).astype(float)
    axial_end = 2 + rows * zoom
    coronal = views[axial_end + 2 : axial_end + 2 + levels * zoom]
    sagittal = views[axial_end + 4 + levels * zoom :]
    assert coronal[:, coronal.sum(0) > 0].mean() > 250  # the whole plane is the bright one
    assert (sagittal > 0).mean() < 0.25  # the sagittal plane crosses it in one line
    middle = plane_slices(volume, "coronal")[cols // 2]
    assert middle.min() == 255  # data.planes agrees on which plane that is
