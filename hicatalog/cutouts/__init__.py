"""Stage: cutouts."""
