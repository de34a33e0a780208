"""beltcurate's loop: the catalog, ingest, Label Studio sync, review and the weekly refresh.

Nothing in this package imports torch; pixels and vectors live in ``active_learning``.
"""

__version__ = "0.1.0"
