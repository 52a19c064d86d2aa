"""spine-assess: sagittal spine MRI to vertebral augmentation eligibility.

Stages (one module or subpackage each, chained only in :mod:`pipeline.run`):
ingest -> segment -> morphometry / stir -> eligibility -> report.
"""

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
