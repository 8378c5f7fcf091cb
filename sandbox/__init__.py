"""The simulated outside world: Salesforce, Kantata OX, NetSuite and Stripe on loopback, with a ground truth.

Imports nothing else of o2c-monitor: it stands in for the vendors the product is tested against.
"""
