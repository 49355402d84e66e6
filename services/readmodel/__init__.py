"""The read model in PostgreSQL: the reporting worker's task changelog projected into tables that
the status API reads (issue 9). ``postgres.py`` embeds a server for ``omboard run`` and the tests,
``migrate.py`` applies ``migrations/``, ``projection.py`` writes and ``queries.py`` reads."""
