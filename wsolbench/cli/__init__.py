"""The ``wsolbench`` command line: one small module per command."""
