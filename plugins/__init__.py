"""The built-in wsolbench plugins: backbones, heads, methods, datasets and hierarchies."""
