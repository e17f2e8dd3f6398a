"""Built-in reference results: published numbers shown as reference rows in tables."""
