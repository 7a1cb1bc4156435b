"""How many documentation blocks ran (printed at the end of the test session)."""

COUNTS: dict = {"executed": 0, "skipped": []}
