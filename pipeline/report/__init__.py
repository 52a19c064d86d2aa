"""Report outputs: report.json (and its JSON Schema), HTML, overlays, DICOM SR and SEG.

Every output is derived from the one report object built by :func:`pipeline.report.json_report.build_report`.
"""
