"""A small user API (HTTP over a Redis cache and a PostgreSQL store) and its chaos suite."""
