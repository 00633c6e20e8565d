"""Per target, TPG, LUN, session and connection I/O counters, and their Prometheus exposition."""
