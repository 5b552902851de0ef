"""The engine and what it produces: the timing primitive (clock.py), interleaved rounds
(engine.py), the saved Result (result.py), statistics (stats.py) and derived figures
(derive.py), the machine (environment.py) and exact counters (counters.py)."""
