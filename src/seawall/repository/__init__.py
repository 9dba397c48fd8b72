"""The repository format: config, keys, packs, index, snapshots, locks.

It knows nothing of files or ML; see docs/format.md for the byte layout.
"""
