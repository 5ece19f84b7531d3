"""Atinuke Workbench: the Streamlit app (`streamlit run app.py`).

One page per job, each a module under ``ui/`` (the only place besides this file that imports
streamlit). Pages read precomputed artifacts under ``atinuke.paths.runs_dir()`` (``$ATINUKE_RUNS``) and
compute the rest on demand.

Every page has its own address, ``/<url path>`` below, and keeps its selections in the query string
(``/errors?model=minilm&task=sst2&example=lee-3``; see ``ui.links.linked_choice``). The app's
root ``/`` opens the first page: Streamlit serves its default page at ``/`` only, so the root is a hidden
page that forwards to ``/models`` with the query string kept, and ``/models`` is a page like the others.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from ui.common import open_model_box, warm_up
from ui.links import scope_links

PAGES_DIR = Path(__file__).resolve().parent / "ui"
ROOT_URL_PATH = "home"  # reserved by the hidden root page (Streamlit still wants a unique path for it)

# (module file, title, icon, url path)
PAGES = (
    ("models.py", "Models and training", ":material/model_training:", "models"),
    ("attention.py", "Attention explorer", ":material/visibility:", "attention"),
    ("attribution.py", "Attribution", ":material/highlight:", "attribution"),
    ("probing.py", "Probing", ":material/stacked_line_chart:", "probing"),
    ("errors.py", "Error analysis", ":material/bug_report:", "errors"),
    ("comparison.py", "Model comparison", ":material/compare:", "comparison"),
    ("features.py", "Features (SAEs)", ":material/grain:", "features"),
    ("mechanisms.py", "Mechanisms", ":material/account_tree:", "mechanisms"),
    ("dynamics.py", "Training dynamics", ":material/timeline:", "dynamics"),
    ("claims.py", "Claims", ":material/fact_check:", "claims"),
    ("reports.py", "Reports", ":material/description:", "reports"),
)


def pages() -> list:
    """The st.Page objects: one per entry of PAGES at its own url path, then the hidden root page."""
    listed = [st.Page(PAGES_DIR / module, title=title, icon=icon, url_path=url) for module, title, icon, url in PAGES]

    def _root() -> None:
        st.switch_page(listed[0], query_params={name: st.query_params.get_all(name) for name in st.query_params})

    root = st.Page(_root, title=PAGES[0][1], icon=PAGES[0][2], url_path=ROOT_URL_PATH, default=True,
                   visibility="hidden")
    return listed + [root]


st.set_page_config(page_title="Atinuke Workbench", page_icon=":material/search_insights:", layout="wide")
navigation = st.navigation(pages())
if navigation.url_path:  # the root page only forwards to /models with the parameters it was opened with
    scope_links(navigation.url_path)
st.sidebar.caption("Atinuke Workbench — check the claims of arXiv 2401.16736 against measurements.")
if navigation.url_path:
    open_model_box()
try:
    navigation.run()
finally:  # once a page has rendered (also when it stops early; not the root, which only forwards): warm up
    if navigation.url_path:  # the model pages in the background (ui.common.warm_up)
        warm_up()
