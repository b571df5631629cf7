"""Errors, file writing, provenance, the parameters (loaded, merged, validated) and the table of
networks: what every other layer uses, and nothing of the study's own."""
