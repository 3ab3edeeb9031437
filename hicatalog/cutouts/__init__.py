"""Stage: cutouts. Image shards (Parquet, ``cutouts`` contract) and how they are made.

- :mod:`~hicatalog.cutouts.shards`: writing, listing and fingerprinting shards.
- :mod:`~hicatalog.cutouts.decode`: JPEG checks and decoding.
- :mod:`~hicatalog.cutouts.services`: cutout URLs of SDSS SkyServer and the Legacy viewer.
- ``hicatalog fetch``: :mod:`~hicatalog.cutouts.fetch` (the job) with
  :mod:`~hicatalog.cutouts.targets` (the target list), :mod:`~hicatalog.cutouts.ratelimit`
  (requests per second per host), :mod:`~hicatalog.cutouts.http_client` (requests, retries,
  image check) and :mod:`~hicatalog.cutouts.ownership` (which run may write a directory).
"""
