"""The app layer: the Streamlit pages (one module per page, listed in ``app.py``'s PAGES) and their shared
caches and widgets (``common.py``).

With ``app.py`` this is the only code that imports streamlit, and the only code that imports both
``workbench`` and ``probes`` (see docs/architecture.md).
"""
