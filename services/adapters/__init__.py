"""Between the domain and the runtime: domain state in tables, domain values as messages."""
