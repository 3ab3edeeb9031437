"""Stage: mock."""
