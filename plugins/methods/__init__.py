"""Built-in WSOL methods, one module per method."""
