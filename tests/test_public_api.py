"""The public API: what `import seawall` offers is deliberate and importable."""

from __future__ import annotations

import seawall


def test_all_is_sorted_and_complete() -> None:
    assert seawall.__all__ == sorted(seawall.__all__)
    assert set(seawall.__all__) == {*seawall._EXPORTS, "__version__"}
    for name in seawall.__all__:
        assert hasattr(seawall, name), name


def test_errors_carry_documented_exit_codes() -> None:
    assert seawall.UsageError.exit_code == 2
    assert seawall.RepositoryNotFound.exit_code == 10
    assert seawall.RepositoryLocked.exit_code == 11
    assert seawall.WrongPassword.exit_code == 12
    assert all(
        issubclass(getattr(seawall, n), seawall.SeawallError)
        for n in seawall.__all__
        if n.endswith(("Error", "Found", "Locked", "Password"))
    )
