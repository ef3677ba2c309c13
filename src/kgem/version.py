"""kgem's version, in a module of its own: saved models record it, and reading it imports nothing else."""

__version__ = "0.1.0"
