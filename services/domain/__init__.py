"""The domain: what the checklist asks, as pure functions and values.

Calendar, planner, provider state and its fold, the ledger and its counts, notification builders
and mail composition. Only ``schemas`` and plain libraries (pydantic, holidays, jinja2) are
imported here: no broker, no HTTP, no database (``tests/unit/test_layers.py``).
"""
