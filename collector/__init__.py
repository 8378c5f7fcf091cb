"""Collector: schedules probe cycles and writes canonical records into the store (issue 4)."""
