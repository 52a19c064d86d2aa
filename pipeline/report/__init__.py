"""Report outputs: report.json (and its JSON Schema), HTML, overlays, DICOM SR, SEG and secondary capture.

Every output is derived from the one report of a study, :class:`pipeline.report.study_report.StudyReport`, made
by :func:`pipeline.run.run_study`.
"""
