"""The one product of the example, as the database and the cache hold it (conftest.py puts it
there; the tests look it up)."""

SKU = "espresso"
CENTS = 250
