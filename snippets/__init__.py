"""Code snippets for the API in nine languages, generated from one spec (``spec.toml``)."""
