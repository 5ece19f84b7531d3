"""The Streamlit pages of the workbench app (one module per page; see app.py)."""
