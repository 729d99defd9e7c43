"""One suite per dataset: ``CHECKS`` (stable names, in report order), ``RECORD`` and ``plan(data)``."""
