"""Fault-injection tests: brokers killed, consumers killed, clocks skewed, topics misconfigured."""
