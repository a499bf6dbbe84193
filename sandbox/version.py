"""The package's version, in a module of its own: the report and the CLI need it without
importing the package's __init__ (which imports them lazily: a circle)."""
__version__ = "0.1.0"
