"""PACS-triggered jobs: a DICOM listener that receives studies, assesses them and sends the results back.

Modules: :mod:`.config` (``configs/listener.yaml``), :mod:`.spool` (durable instance storage),
:mod:`.state` (SQLite: studies, jobs, outbox; the study state machine), :mod:`.scp` (pynetdicom Storage SCP),
:mod:`.security` (access control, TLS contexts), :mod:`.jobs` (study jobs on the :mod:`pipeline.batch` executor),
:mod:`.export` (C-STORE and STOW-RS), :mod:`.service` (the running listener: threads, scheduler, start-up
reconciliation),
:mod:`.operations` (what ``spine-assess queue`` shows and does). Operator guide: ``docs/pacs.md``.
"""

from pipeline.listener.config import ListenerConfig, load_listener_config
from pipeline.listener.service import Listener, reconcile, serve
from pipeline.listener.state import OutboxStatus, StateDB, StudyStatus

__all__ = [
    "Listener",
    "ListenerConfig",
    "OutboxStatus",
    "StateDB",
    "StudyStatus",
    "load_listener_config",
    "reconcile",
    "serve",
]
