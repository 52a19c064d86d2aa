"""Tools that stand beside the pipeline: they make or examine data for it and are never one of its stages.

A tool may import the pipeline's shared types (:mod:`pipeline.model`, :mod:`pipeline.levels`, ...); no stage
(ingest, segment, morphometry, stir, eligibility, report, batch, listener, the run functions) imports a tool
(``tests/test_tools.py`` holds them to it). Only the command line (``spine-assess phantom``) and the training of
the segmentation network (:mod:`pipeline.segment.train`) use one.

- :mod:`pipeline.tools.phantom`: synthetic sagittal spine MRI studies with exact ground truth (test data, the
  committed ``sample_dicom/`` studies, training phantoms).
"""
