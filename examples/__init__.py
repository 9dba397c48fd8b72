"""Examples of using seawall (importable so the tests can run them)."""
