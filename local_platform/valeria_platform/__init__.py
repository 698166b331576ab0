"""The local platform: real services on 127.0.0.1 for the tests, the demo and the benchmarks.

Each module starts one service and stops it by PID; the pytest fixtures and ``make demo`` use the
same helpers, so the demo and the tests cannot drift apart.
"""
