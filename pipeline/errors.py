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


# --------------------------------------------------------------------------- classifying failures
# How a run that raised should be treated by whoever schedules runs (batch, listener). Values are stored in the
# batch ledger and the listener's error text, so they are plain strings.
INPUT = "input"  # the data (or the configuration) is the problem: the same input gives the same answer; never retry
RESOURCE = "resource"  # disk full, I/O error, out of memory, worker crash, timeout: retry later with back-off
BUG = "bug"  # an exception nobody raises on purpose: retry at least once, and report it as a bug

_RESOURCE_TYPES: tuple[type[BaseException], ...] = (OSError, MemoryError, TimeoutError)


def error_kind(exc: BaseException) -> str:
    """``INPUT``, ``RESOURCE`` or ``BUG`` for an exception raised while assessing a study.

    ``OSError`` (ENOSPC, EIO, EACCES, a vanished file...), ``MemoryError`` and ``TimeoutError`` are RESOURCE, and
    so is any exception raised *from* one (``raise ... from exc``); a :class:`PipelineError` (bad data, invalid
    configuration, an analysis that cannot be trusted) is otherwise INPUT; anything else is BUG.
    """
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, _RESOURCE_TYPES):
            return RESOURCE
        e = e.__cause__
    return INPUT if isinstance(exc, PipelineError) else BUG
