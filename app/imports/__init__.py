"""The historical import: a legacy system's reports (CSV, GeoJSON) through the intake path.

``sources`` reads files, ``mapping`` maps their columns, categories and statuses onto ours,
``service`` files the rows (``import_reports``), ``routes`` is ``POST /v1/imports`` and
``cli`` the ``kerbside import`` command. See docs/import.md.
"""
