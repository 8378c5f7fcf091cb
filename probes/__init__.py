"""Probes: read changes from each vendor's API and write back for resyncs (built by issue 4)."""
