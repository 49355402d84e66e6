"""Dev tooling: the embedded brokers, PostgreSQL and mail sink of ``make run`` and the tests, and the demo."""
