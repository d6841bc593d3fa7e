"""orcac: the Orca 2 recipe as a declarative language and a compiler."""

__version__ = "0.1.0"
