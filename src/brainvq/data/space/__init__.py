"""The reference space: where every slice brainvq learns from or answers for lies in a brain.

The reference is nilearn's MNI152 2009 T1 template and brain mask (1 mm, shipped inside nilearn,
no download). A run's slices lie on a `Frame`: a grid of (row, column, level) positions with an
affine into reference millimetres, measured for the OASIS slice set (`frame.oasis_frame`) and used
by construction for the demo cohort and for NIfTI volumes, so that level k means the same anatomy
in every run. A user's scan is registered to the reference (`registration`), its intensities are
mapped onto the training data's (`intensity`), its brain mask is its own, the atlas's or the
user's (`scan`), and answers computed on the frame are carried back to the scan's own voxels
(`resample`, `align`).
"""
