"""Differential conformance suite: each scenario runs against RabbitMQ (real pika) and litemq (litemq.pika).

A package, so its conftest and modules never shadow tests/conftest.py (other test modules import from it)."""
