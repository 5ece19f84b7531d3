"""Exported reports: one self-contained HTML file (plus its data, plus a PDF when Chromium is installed).

``workbench report --runs runs --out report.html [--models A,B] [--tasks snli,squad2] [--compare A,B]``
gathers every run under the given directories and writes:

- ``report.html``: findings first (the paper's claims with their verdicts), then one summary per model, then
  attention, attribution and faithfulness, probing, error analysis, model comparison and provenance; a linked
  table of contents; a caption under every figure; print styles sized for A4/Letter. It opens offline (plotly's
  JavaScript embedded once, no CDN) and everything from the data is escaped (jinja2 autoescaping);
- ``report_data/``: every table in full as CSV/parquet (the page shows the informative rows and links here),
  and the provenance as JSON;
- ``report.pdf``: printed by headless Chromium when installed.

Layout: :mod:`.inputs` finds the runs, :mod:`.document` and ``templates/`` render, one module per group of
sections (:mod:`.findings`, :mod:`.interpretability`, :mod:`.outcomes`), :mod:`.build` puts them in order
(``SECTIONS``: a new section is one function and one entry there), :mod:`.output` writes the files.
"""
from workbench.report.build import SECTIONS, ReportResult, add_arguments, build_report, run
from workbench.report.inputs import ReportInputs, gather
from workbench.report.output import find_chromium

__all__ = ["SECTIONS", "ReportInputs", "ReportResult", "add_arguments", "build_report", "find_chromium", "gather", "run"]
