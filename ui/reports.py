"""Reports: build the self-contained HTML report (and PDF when Chromium is installed) and download it."""
from __future__ import annotations

import datetime as dt
import io
import zipfile
from pathlib import Path
from typing import Optional

import streamlit as st

from atinuke.errors import UserInputError
from ui import common
from workbench.report import ReportInputs, build_report, find_chromium, gather

MECHANISM_NAMES = {"lens": "logit lens", "patching": "activation patching", "circuit": "circuit",
                   "dla": "direct logit attribution"}


def _zip(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(directory.parent))
    return buffer.getvalue()


def _candidates(root: Path) -> tuple[dict[str, Path], Optional[ReportInputs]]:
    """Every run under ``root`` the report can include, by kind ("experiment", "fine-tuning / …", "SAE / …", …)."""
    try:
        found = gather([root])
    except UserInputError:
        return {}, None
    inside = (lambda path: found.experiment is not None and found.experiment in path.parents)  # noqa: E731
    candidates: dict[str, Path] = {}
    if found.experiment is not None:
        candidates[f"controlled experiment ({found.experiment.name}/)"] = found.experiment
    candidates |= {f"pretraining / {r.name}": r.path for r in found.pretrain if not inside(r.path)}
    candidates |= {f"fine-tuning / {r.label}": r.path for r in found.finetune if not inside(r.path)}
    if (root / "probes").is_dir() and found.probes is not None:
        candidates["probe results"] = root / "probes"
    candidates |= {f"attribution / {r.label}": r.path for r in found.attributions if not inside(r.path)}
    candidates |= {f"SAE / {r.path.name} ({r.model})": r.path for r in found.sae}
    candidates |= {f"{MECHANISM_NAMES.get(r.kind, r.kind)} / {r.path.name} ({r.model})": r.path
                   for r in found.mechanisms}
    return candidates, found


def render() -> None:
    st.title("Reports")
    common.page_header()
    st.caption("One HTML file that opens offline (plotly embedded): the claims' verdicts first, a summary per model, "
               "then attention, attribution and faithfulness, probing, error analysis, comparison and provenance, "
               "with its data as CSV/parquet. Command line: `workbench report --runs runs --out report.html "
               "[--models A,B] [--tasks snli] [--compare A,B]`.")
    root = common.root()
    candidates, found = _candidates(root)
    if not candidates:
        common.missing("run to report on", "pretrain")
        return
    chosen = st.multiselect("Runs", list(candidates), default=list(candidates), key="report_runs",
                            help="Everything under the runs directory by default: the controlled experiment (the "
                                 "claims' verdicts), pretraining, fine-tuning, probes, attributions, SAEs, lenses, "
                                 "patching and circuits.")
    # All of it: the runs directory itself, so the report is `workbench report --runs <runs>` exactly
    paths = [root] if set(chosen) == set(candidates) else [candidates[c] for c in chosen]
    if set(chosen) != set(candidates):
        with common.friendly_errors("report"):
            found = gather(paths) if chosen else None
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
                result = build_report(paths, out, title=title or "Report", pdf=want_pdf,
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
