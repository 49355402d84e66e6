"""Intake: where upstream events enter omboard (HTTP ``POST /v1/events`` and ``omboard publish``).

Both validate with ``schemas.parsing.parse_event`` and publish through ``EventPublisher`` /
``BlockingEventPublisher``, so an event looks the same on ``omboard.events`` whichever way it came.
"""
