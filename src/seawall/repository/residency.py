"""Region labels and residency rules: where a snapshot's data may live.

A repository may carry a region (or jurisdiction) label in its config, such
as ``eu`` or ``us-east``; empty means unlabelled. A snapshot may carry a
residency rule, a label of the same form. The rule is simple and strict: a
snapshot with rule ``r`` may only be stored in a repository labelled ``r``.
An unlabelled repository satisfies no rule, since nothing says where it is.
Labels are compared case-insensitively (they are stored lower-case).
"""

from __future__ import annotations

import re

from seawall.errors import UsageError

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,62})")


def normalize_label(label: str, what: str = "region") -> str:
    """``label`` lower-cased, or UsageError if it is not a valid label ("" stays "").

    A label is 1 to 63 characters: letters, digits, ``.``, ``_`` and ``-``,
    starting with a letter or digit.
    """
    value = label.strip().lower()
    if value and not _LABEL.fullmatch(value):
        raise UsageError(
            f"invalid {what} {label!r}: use letters, digits, '.', '_' and '-' "
            "(at most 63 characters, starting with a letter or digit), e.g. 'eu' or 'us-east'"
        )
    return value


def residency_allows(rule: str, region: str) -> bool:
    """Whether a snapshot with residency ``rule`` may be stored in a repository of ``region``."""
    return not rule or rule.lower() == region.lower()


def residency_violation(rule: str, region: str, what: str, location: str) -> str | None:
    """The message that refuses placing ``what`` ("snapshot 1a2b3c4d") in the repository
    at ``location``, or None if its residency rule allows it."""
    if residency_allows(rule, region):
        return None
    where = f"is labelled region {region!r}" if region else "has no region label"
    return (
        f"{what} must stay in region {rule!r} (residency rule), but the "
        f"repository at {location} {where}; use a repository created with "
        f"`seawall init --region {rule}`"
    )
