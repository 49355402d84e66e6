"""The omboard contract: events, tasks, notifications, the topic registry and the catalog model.

Everything that crosses a process boundary is defined here once, as frozen pydantic models.
"""
