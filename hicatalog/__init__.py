"""hicatalog: H I mass-fraction catalogs from optical galaxy cutouts, on Ray.

Stages (subpackages), in the order data flows: ``surveys``, ``mock``, ``cutouts``, ``models``,
``training``, ``catalog``, ``evaluation``. Nothing here does I/O at import time.
"""

__version__ = "0.1.0"
