"""The HTTP adapter shared by the APIs: API keys, roles and their checks."""
