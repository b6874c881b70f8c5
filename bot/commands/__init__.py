"""The `/meet` command language, parsed and rendered once for every chat platform."""
