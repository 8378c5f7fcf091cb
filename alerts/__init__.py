"""Alerts: Prometheus rules and direct Alertmanager notifications for stuck transactions (issue 6)."""
