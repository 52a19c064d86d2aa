"""The one exception hierarchy of the pipeline.

Callers handle these differently:

- :class:`InputError`: the data given to us is unusable (file, study, series). Batch records it and moves on.
- :class:`ConfigError`: a configuration or clinical-input file is invalid. The CLI exits with status 2.
  :class:`UsageError` (a ConfigError): the command line asks for something unsafe or impossible (status 2).
- :class:`AnalysisError`: a stage could not produce a trustworthy result from valid input
  (e.g. no vertebral column found, registration failed).

Messages name the file/series (by path or UID, never by patient identifiers) and the problem,
and where possible how to fix it.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Root of every error the pipeline raises on purpose."""


class InputError(PipelineError):
    """Input data (a file, series or study) cannot be used."""


class DicomReadError(InputError):
    """A single file is not readable DICOM, or lacks what the pipeline needs."""


class SeriesError(InputError):
    """A series cannot be assembled into a volume (geometry, missing slices, mixed sizes...)."""


class StudyError(InputError):
    """A study folder cannot be processed as a whole (no usable series, mixed patients...)."""


class ConfigError(PipelineError):
    """A configuration file or clinical-input file is invalid."""


class UsageError(ConfigError):
    """The command asks for something that cannot be done as given (a missing input path, an output folder that
    would lose files). Exit status 2 like a configuration error; the CLI says "usage error"."""


class AnalysisError(PipelineError):
    """A stage could not produce a trustworthy result from valid input."""
