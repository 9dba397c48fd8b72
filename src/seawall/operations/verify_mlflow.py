"""verify mlflow: compare two MLflow registries and list every difference.

Each side is a tracking server URL (``http(s)://...``), a backend store URI
(``sqlite:///PATH``, ``postgresql://...``), or a captured manifest (a
``registry.jsonl`` file, or a restored MLflow asset directory holding one).
Live sides are read through ``MlflowClient``; a backend URI whose artifact
locations are ``mlflow-artifacts:`` also needs its artifact store (the
server's ``--artifacts-destination``) to read artifacts.

What is compared, and what is not, is mlflow_registry's to say: every
experiment, run (params, tags, metric histories, artifact checksums) and
registered model (versions, stages, aliases, tags), with their ids, names
and times; not artifact locations, which a restore moves by design.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from seawall.errors import SourceError, UsageError
from seawall.sources.mlflow_registry import (
    Difference,
    client_artifacts,
    collect,
    compare,
    load_manifest,
    read_client,
)
from seawall.sources.mlflow_stores import open_db, parse_backend

MANIFEST = "registry.jsonl"


@dataclass
class VerifyResult:
    differences: list[Difference]
    #: per side: how many experiments, runs, registered models and versions were compared
    counts: dict[str, dict[str, int]]

    @property
    def ok(self) -> bool:
        return not self.differences


def verify_mlflow(
    source: str,
    restored: str,
    *,
    source_artifacts: str | None = None,
    restored_artifacts: str | None = None,
) -> VerifyResult:
    """Compare the registry at ``source`` with the one at ``restored``."""
    a = load_registry(source, source_artifacts)
    b = load_registry(restored, restored_artifacts)
    return VerifyResult(compare(a, b), {"source": _counts(a), "restored": _counts(b)})


def load_registry(spec: str, artifacts: str | None = None) -> dict[str, dict[str, Any]]:
    """The registry at ``spec``: a server URL, a backend URI, or a manifest."""
    scheme = spec.partition("://")[0].split("+", 1)[0].lower() if "://" in spec else ""
    if scheme in ("http", "https"):
        _answers(spec)
        return _through_client(spec, spec, artifacts)
    if scheme:
        backend = parse_backend(spec)  # UsageError for what MLflow could not open either
        # Look first: MlflowClient would make an empty registry of a missing or foreign
        # database (and compare with that), and retries a refused connection for minutes.
        with open_db(backend, read_only=True) as db:
            if not db.schema_revision():
                raise UsageError(f"{backend.display} is not an MLflow database")
        return _through_client(_driver(spec), backend.display, artifacts)
    path = Path(spec).expanduser()
    if path.is_dir():
        path = path / MANIFEST
    if not path.is_file():
        raise UsageError(
            f"{spec} is not a tracking server URL (http://...), a backend store URI "
            "(sqlite:///..., postgresql://...) or a registry manifest (registry.jsonl)"
        )
    return load_manifest(path)


def _answers(url: str) -> None:
    """Fail fast on a server that is not there (MLflow's client would retry for minutes)."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=10):
            pass
    except urllib.error.HTTPError:
        pass  # it answered: let the client say what is wrong
    except OSError as err:
        reason = getattr(err, "reason", err)
        raise SourceError(f"no MLflow tracking server answers at {url}: {reason}") from None


def _driver(uri: str) -> str:
    """``postgresql://`` means psycopg2 to SQLAlchemy; seawall ships psycopg 3."""
    if uri.startswith(("postgresql://", "postgres://")):
        import importlib.util

        if importlib.util.find_spec("psycopg2") is None:
            return "postgresql+psycopg://" + uri.partition("://")[2]
    return uri


def _through_client(uri: str, display: str, artifacts: str | None) -> dict[str, dict[str, Any]]:
    try:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise UsageError(
            "verify mlflow needs the mlflow package: pip install 'seawall[mlflow]'"
        ) from None
    try:
        with warnings.catch_warnings(), _no_progress_bars():
            # MLflow's own deprecations (model stages, SQLAlchemy loaders) are not the user's.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            return collect(read_client(client, client_artifacts(uri, artifacts)))
    except MlflowException as err:
        message = str(err).strip().splitlines()[0][:300] if str(err).strip() else "failed"
        password = urlsplit(uri).password
        if password:
            message = message.replace(password, "***")
        raise SourceError(f"MLflow at {display}: {message}") from None


@contextmanager
def _no_progress_bars() -> Iterator[None]:
    """No "Downloading artifacts" bar per file checksummed."""
    name = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    saved = os.environ.get(name)
    os.environ[name] = "false"
    try:
        yield
    finally:
        if saved is None:
            del os.environ[name]
        else:
            os.environ[name] = saved


def _counts(registry: dict[str, dict[str, Any]]) -> dict[str, int]:
    models = registry["registered_models"].values()
    return {
        "experiments": len(registry["experiments"]),
        "runs": len(registry["runs"]),
        "registered_models": len(models),
        "model_versions": sum(len(m.get("versions", {})) for m in models),
    }
