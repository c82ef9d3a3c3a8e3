"""Reports: per-study figures and HTML page (:func:`study_report`), shared plot style.

``mixsearch study report NAME`` calls :func:`study_report`; ``mixsearch bench`` draws
its regret plot with the same style helpers (:mod:`mixsearch.report.style`).
"""

from mixsearch.report.build import study_report

__all__ = ["study_report"]
