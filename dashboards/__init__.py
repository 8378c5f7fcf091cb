"""Dashboards: the Streamlit console for KPIs, breaks, deal timelines and resyncs (issue 8)."""
