"""inpo: Iterative Nash Policy Optimization as a reproducible experiment workflow."""

__version__ = "0.1.0"
