"""The front door: a landing page at ``/`` and the API documentation, served offline."""
