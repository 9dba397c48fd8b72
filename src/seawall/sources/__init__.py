"""Sources: turn an asset into entries to store, consistently, and back again."""
