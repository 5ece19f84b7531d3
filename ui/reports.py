"""Reports: build the self-contained HTML report (and PDF when Chromium is installed) and download it."""
from __future__ import annotations

import datetime as dt
import io
import zipfile
from pathlib import Path

import streamlit as st

from ui import common
from workbench import artifacts
from workbench.report import build_report, find_chromium, gather


def _zip(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(directory.parent))
    return buffer.getvalue()


def render() -> None:
    st.title("Reports")
    common.page_header()
    st.caption("One HTML file that opens offline (plotly embedded): the claims' verdicts first, a summary per model, "
               "then attention, attribution and faithfulness, probing, error analysis, comparison and provenance, "
               "with its data as CSV/parquet. Command line: `workbench report --runs runs --out report.html "
               "[--models A,B] [--tasks snli] [--compare A,B]`.")
    root = common.root()
    candidates = {f"pretrain / {r.name}": r.path for r in artifacts.find_pretrain_runs(root)}
    candidates |= {f"finetune / {r.label}": r.path for r in artifacts.find_finetune_runs(root)}
    if (root / "probes").is_dir():
        candidates["probe results"] = root / "probes"
    if not candidates:
        common.missing("run to report on", "pretrain")
        return
    chosen = st.multiselect("Runs", list(candidates), default=list(candidates), key="report_runs")
    found = None
    with common.friendly_errors("report"):
        found = gather([candidates[c] for c in chosen]) if chosen else None
    models = st.multiselect("Models (none chosen: all)", found.models() if found else [], key="report_models")
    tasks = st.multiselect("Tasks (none chosen: all)", found.tasks() if found else [], key="report_tasks")
    side_by_side = st.checkbox("Side by side (a comparison report of exactly two models)", value=False,
                               disabled=len(models) != 2, key="report_pair")
    title = st.text_input("Title", "Atinuke Workbench report", key="report_title")
    want_pdf = st.checkbox("Also print a PDF", value=False, disabled=find_chromium() is None, key="report_pdf",
                           help=None if find_chromium() else "needs chromium (apt-get install chromium)")
    if st.button("Build report", type="primary", key="report_build"):
        if not chosen:
            st.error("Choose at least one run.")
            return
        with common.friendly_errors("report"):
            stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
            out = root / "reports" / f"report-{stamp}.html"
            with st.spinner("Analysing runs and writing the report…"):
                result = build_report([candidates[c] for c in chosen], out, title=title or "Report", pdf=want_pdf,
                                      models=None if side_by_side or not models else models, tasks=tasks or None,
                                      pair=models if side_by_side and len(models) == 2 else None)
            st.session_state["report_result"] = (str(result.html), str(result.data_dir),
                                                 str(result.pdf) if result.pdf else None)
    if "report_result" in st.session_state:
        html_path, data_dir, pdf_path = st.session_state["report_result"]
        if Path(html_path).is_file():
            st.success(f"Report written to `{html_path}`.")
            c1, c2, c3 = st.columns(3)
            c1.download_button("Download HTML", Path(html_path).read_bytes(), Path(html_path).name, "text/html",
                               key="dl_html")
            c2.download_button("Download data (zip)", _zip(Path(data_dir)), Path(data_dir).name + ".zip",
                               "application/zip", key="dl_data")
            if pdf_path and Path(pdf_path).is_file():
                c3.download_button("Download PDF", Path(pdf_path).read_bytes(), Path(pdf_path).name,
                                   "application/pdf", key="dl_pdf")


render()
