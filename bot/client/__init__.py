"""The Python participant: ``conclave join LINK``."""
