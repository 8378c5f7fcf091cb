"""Reconciler: links each deal end to end with polars, finds breaks, computes KPIs (issue 5)."""
