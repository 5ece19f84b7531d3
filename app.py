"""Atinuke Workbench: the Streamlit app (`streamlit run app.py`).

One page per job, each a module under ``workbench/pages/`` (the only place besides this file that imports
streamlit). Pages read precomputed artifacts under ``atinuke.paths.runs_dir()`` (``$ATINUKE_RUNS``) and
compute the rest on demand.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

PAGES_DIR = Path(__file__).resolve().parent / "workbench" / "pages"

# (module file, title, icon, url path)
PAGES = (
    ("models.py", "Models and training", ":material/model_training:", "models"),
    ("attention.py", "Attention explorer", ":material/visibility:", "attention"),
    ("attribution.py", "Attribution", ":material/highlight:", "attribution"),
    ("probing.py", "Probing", ":material/stacked_line_chart:", "probing"),
    ("errors.py", "Error analysis", ":material/bug_report:", "errors"),
    ("comparison.py", "Model comparison", ":material/compare:", "comparison"),
    ("claims.py", "Claims", ":material/fact_check:", "claims"),
    ("reports.py", "Reports", ":material/description:", "reports"),
)

st.set_page_config(page_title="Atinuke Workbench", page_icon=":material/search_insights:", layout="wide")
navigation = st.navigation([st.Page(PAGES_DIR / module, title=title, icon=icon, url_path=url, default=i == 0)
                            for i, (module, title, icon, url) in enumerate(PAGES)])
st.sidebar.caption("Atinuke Workbench — check the claims of arXiv 2401.16736 against measurements.")
navigation.run()
