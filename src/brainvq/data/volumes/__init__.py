"""Scans as they come off a scanner or out of a pipeline, read into one thing.

Every way a scan arrives is read into the same `Scan` (brainvq.data.space.scan): its voxels
(X, Y, Z) float32, the affine that places them in RAS millimetres, a NIfTI header for the
outputs, notes, and a name for the output files; from there every scan takes one path
(brainvq.data.space.align). `discovery.find_scans` finds the scans of an input without reading
them; `files` reads NIfTI and MGZ (nibabel), `itk` NRRD and MetaImage (SimpleITK), `dicom` DICOM
series (SimpleITK and GDCM), `series` chooses the T1 series of a study, `bids` lists a BIDS
tree's T1w images. docs/inputs.md is the user's page.
"""
