"""Stage: surveys."""
