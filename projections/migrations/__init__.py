"""projections/migrations."""
