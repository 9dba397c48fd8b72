"""The verbs: backup, restore, check, forget, prune, and the read-only views.

Operations take their dependencies as arguments and return results; they
never print. Each holds the repository lock its verb needs.
"""
