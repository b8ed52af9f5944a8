"""A city sets itself up from one declarative file: jurisdiction, boundary, areas, services,
crews and response templates (``kerbside city apply`` / ``export``)."""
