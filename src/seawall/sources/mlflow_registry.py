"""What an MLflow registry holds, as data two stores can be compared by.

A *registry* is three maps: experiments by id, runs by id, registered models
by name (each with its versions by number). Everything a user would miss is
in it: names, lifecycle stages, creation and update times, params, tags,
metric histories (every point: step, timestamp, value), registered models'
descriptions, tags and aliases, versions' stages, sources, runs and tags, and
the sha256 of every artifact file of every run. Artifact *locations* are
not: they change, by design, when a registry is restored elsewhere; model
version sources are kept relative to their run (``runs:/ID/path``) so they
compare across stores.

It is read from two places that must agree: the database itself, with SQL
(a capture reads its own copy, at the instant of the copy, into the
*manifest* it stores with the snapshot), and a live store through
``MlflowClient`` (a server URL or a backend URI). A manifest is JSON lines:
a header, then one record per experiment, run and registered model, so it
is written run by run, never held whole.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from seawall.errors import SourceError
from seawall.sources.mlflow_stores import Db, artifact_store, key_under, sha256_of

FORMAT = "seawall-mlflow-registry"
VERSION = 1
SECTIONS = {"experiment": "experiments", "run": "runs", "registered_model": "registered_models"}
#: model versions MLflow has deleted keep a row, under this stage, to hold their number
DELETED_VERSION_STAGE = "Deleted_Internal"

#: location -> {artifact path: sha256}, or a string saying why they could not be read
ArtifactReader = Callable[[str], dict[str, str] | str]
Record = tuple[str, str, dict[str, Any]]


# --- one shape for both readers --------------------------------------------------------------


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _point(step: Any, timestamp: Any, value: Any, is_nan: bool = False) -> list[Any]:
    number = float(value)
    # JSON has no NaN; MLflow stores +-inf as +-max float, which JSON holds as is.
    return [int(step), int(timestamp), "NaN" if is_nan or math.isnan(number) else number]


def _history(points: Iterable[list[Any]]) -> list[list[Any]]:
    return sorted(points, key=lambda p: (p[0], p[1], repr(p[2])))


def _experiment(
    name: Any, stage: Any, created: Any, updated: Any, tags: dict[str, str]
) -> dict[str, Any]:
    return {
        "name": _text(name),
        "lifecycle_stage": _text(stage),
        "creation_time": _int(created),
        "last_update_time": _int(updated),
        "tags": tags,
    }


def _run(
    info: tuple[Any, ...],
    params: dict[str, str],
    tags: dict[str, str],
    metrics: dict[str, list[list[Any]]],
    artifacts: dict[str, str] | str,
) -> dict[str, Any]:
    experiment_id, name, user, status, start, end, stage = info
    return {
        "experiment_id": _text(experiment_id),
        "name": _text(name),
        "user_id": _text(user),
        "status": _text(status),
        "start_time": _int(start),
        "end_time": _int(end),
        "lifecycle_stage": _text(stage),
        "params": params,
        "tags": tags,
        "metrics": metrics,
        "artifacts": artifacts,
    }


def _version(info: tuple[Any, ...], tags: dict[str, str], runs: dict[str, str]) -> dict[str, Any]:
    created, updated, description, user, stage, source, run_id, status = info
    return {
        "creation_time": _int(created),
        "last_updated_time": _int(updated),
        "description": _text(description),
        "user_id": _text(user),
        "stage": _text(stage),
        "source": relative_source(_text(source), _text(run_id), runs),
        "run_id": _text(run_id),
        "status": _text(status),
        "tags": tags,
    }


def _model(
    info: tuple[Any, ...],
    tags: dict[str, str],
    aliases: dict[str, str],
    versions: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    created, updated, description = info
    return {
        "creation_time": _int(created),
        "last_updated_time": _int(updated),
        "description": _text(description),
        "tags": tags,
        "aliases": aliases,
        "versions": versions,
    }


def relative_source(source: str, run_id: str, runs: dict[str, str]) -> str:
    """A version's source below its run's artifact location as ``runs:/ID/path``."""
    base = runs.get(run_id, "").rstrip("/")
    if base and (source == base or source.startswith(base + "/")):
        return f"runs:/{run_id}{source[len(base) :]}"
    return source


# --- from the database ---------------------------------------------------------------------


def read_database(db: Db, artifacts: ArtifactReader) -> Iterator[Record]:
    """Every experiment, run and registered model in an MLflow database, by SQL.

    Only tables and columns MLflow has kept since 2.x are read, so a capture
    does not depend on the MLflow version installed here.
    """
    exp_tags = _grouped(db.rows("SELECT experiment_id, key, value FROM experiment_tags"))
    for eid, name, stage, created, updated in db.rows(
        "SELECT experiment_id, name, lifecycle_stage, creation_time, last_update_time "
        "FROM experiments ORDER BY experiment_id"
    ):
        yield "experiment", str(eid), _experiment(name, stage, created, updated, exp_tags(eid))
    locations: dict[str, str] = {}
    for row in db.rows(
        "SELECT run_uuid, experiment_id, name, user_id, status, start_time, end_time, "
        "lifecycle_stage, artifact_uri FROM runs ORDER BY run_uuid"
    ):
        run_id, location = str(row[0]), _text(row[8])
        locations[run_id] = location
        params = dict(db.rows("SELECT key, value FROM params WHERE run_uuid = ?", run_id))
        tags = dict(db.rows("SELECT key, value FROM tags WHERE run_uuid = ?", run_id))
        metrics: dict[str, list[list[Any]]] = {}
        for key, step, ts, value, is_nan in db.rows(
            "SELECT key, step, timestamp, value, is_nan FROM metrics WHERE run_uuid = ?", run_id
        ):
            metrics.setdefault(key, []).append(_point(step, ts, value, bool(is_nan)))
        metrics = {k: _history(v) for k, v in sorted(metrics.items())}
        yield "run", run_id, _run(tuple(row[1:8]), params, tags, metrics, artifacts(location))
    model_tags = _grouped(db.rows("SELECT name, key, value FROM registered_model_tags"))
    aliases = _grouped(
        [
            (n, a, str(v))
            for n, a, v in db.rows("SELECT name, alias, version FROM registered_model_aliases")
        ]
    )
    version_tags = _grouped(
        [
            ((n, str(v)), k, val)
            for n, v, k, val in db.rows("SELECT name, version, key, value FROM model_version_tags")
        ]
    )
    versions: dict[str, dict[str, dict[str, Any]]] = {}
    for name, number, *info in db.rows(
        "SELECT name, version, creation_time, last_updated_time, description, user_id, "
        "current_stage, source, run_id, status FROM model_versions "
        "WHERE current_stage <> ? ORDER BY name, version",
        DELETED_VERSION_STAGE,
    ):
        versions.setdefault(name, {})[str(number)] = _version(
            tuple(info), version_tags((name, str(number))), locations
        )
    for name, *info in db.rows(
        "SELECT name, creation_time, last_updated_time, description FROM registered_models "
        "ORDER BY name"
    ):
        yield (
            "registered_model",
            name,
            _model(tuple(info), model_tags(name), aliases(name), versions.get(name, {})),
        )


def _grouped(rows: Iterable[tuple[Any, ...]]) -> Callable[[Any], dict[str, str]]:
    """owner -> {key: value} of (owner, key, value) rows, as a lookup."""
    out: dict[Any, dict[str, str]] = {}
    for owner, key, value in rows:
        out.setdefault(owner, {})[str(key)] = _text(value)
    return lambda owner: dict(sorted(out.get(owner, {}).items()))


# --- through the MLflow client ---------------------------------------------------------------


def read_client(client: Any, artifacts: ArtifactReader) -> Iterator[Record]:
    """The same records as :func:`read_database`, through ``MlflowClient`` (any store)."""
    from mlflow.entities import ViewType

    experiments = _pages(
        lambda token: client.search_experiments(
            view_type=ViewType.ALL, max_results=1000, page_token=token
        )
    )
    for exp in sorted(experiments, key=lambda e: int(e.experiment_id)):
        yield (
            "experiment",
            str(exp.experiment_id),
            _experiment(
                exp.name,
                exp.lifecycle_stage,
                exp.creation_time,
                exp.last_update_time,
                dict(sorted(exp.tags.items())),
            ),
        )
    locations: dict[str, str] = {}

    def runs_of(experiment_id: str) -> list[Any]:
        return _pages(
            lambda token: client.search_runs(
                [experiment_id], run_view_type=ViewType.ALL, max_results=1000, page_token=token
            )
        )

    def versions_of(name: str) -> list[Any]:
        quoted = name.replace("'", "\\'")
        return _pages(
            lambda token: client.search_model_versions(
                f"name='{quoted}'", max_results=1000, page_token=token
            )
        )

    runs = [run for exp in experiments for run in runs_of(exp.experiment_id)]
    for run in sorted(runs, key=lambda r: str(r.info.run_id)):
        info = run.info
        locations[info.run_id] = info.artifact_uri
        metrics = {
            key: _history(
                _point(m.step, m.timestamp, m.value)
                for m in client.get_metric_history(info.run_id, key)
            )
            for key in sorted(run.data.metrics)
        }
        yield (
            "run",
            info.run_id,
            _run(
                (
                    info.experiment_id,
                    info.run_name,
                    info.user_id,
                    info.status,
                    info.start_time,
                    info.end_time,
                    info.lifecycle_stage,
                ),
                dict(sorted(run.data.params.items())),
                dict(sorted(run.data.tags.items())),
                metrics,
                artifacts(info.artifact_uri),
            ),
        )
    models = _pages(
        lambda token: client.search_registered_models(max_results=1000, page_token=token)
    )
    for model in sorted(models, key=lambda m: str(m.name)):
        versions = {
            str(v.version): _version(
                (
                    v.creation_timestamp,
                    v.last_updated_timestamp,
                    v.description,
                    v.user_id,
                    v.current_stage,
                    v.source,
                    v.run_id,
                    v.status,
                ),
                dict(sorted(v.tags.items())),
                locations,
            )
            for v in versions_of(model.name)
        }
        yield (
            "registered_model",
            model.name,
            _model(
                (model.creation_timestamp, model.last_updated_timestamp, model.description),
                dict(sorted(model.tags.items())),
                {str(a): str(v) for a, v in sorted(model.aliases.items())},
                dict(sorted(versions.items(), key=lambda kv: int(kv[0]))),
            ),
        )


def _pages(search: Callable[[str | None], Any]) -> list[Any]:
    out: list[Any] = []
    token = None
    while True:
        page = search(token)
        out.extend(page)
        token = page.token
        if not token:
            return out


def client_artifacts(tracking_uri: str, artifacts_root: str | None) -> ArtifactReader:
    """Checksums of the files below a location, read with MLflow's artifact repositories.

    A ``mlflow-artifacts:`` location is resolved by the tracking server, or,
    for a backend URI, under ``artifacts_root`` (the server's artifact store).
    """

    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    store = artifact_store(artifacts_root) if artifacts_root else None

    def read(location: str) -> dict[str, str] | str:
        uri = location
        if location.startswith("mlflow-artifacts:") and not tracking_uri.startswith("http"):
            if store is None:
                return "unreadable: a mlflow-artifacts: location needs the artifact store"
            uri = f"{store.uri}/{key_under(store, location)}".rstrip("/")
            if store.kind == "directory":
                uri = Path(uri).as_uri()
        try:
            repo = get_artifact_repository(uri, tracking_uri=tracking_uri)
            out: dict[str, str] = {}
            with tempfile.TemporaryDirectory(prefix="seawall-verify-") as tmp:
                _walk(repo, None, Path(tmp), out)
            return dict(sorted(out.items()))
        except Exception as err:  # any store error becomes a difference, not a crash
            return f"unreadable: {type(err).__name__}: {str(err)[:200]}"

    return read


def _walk(repo: Any, path: str | None, tmp: Path, out: dict[str, str]) -> None:
    for info in repo.list_artifacts(path):
        if info.is_dir:
            _walk(repo, info.path, tmp, out)
            continue
        local = Path(repo.download_artifacts(info.path, dst_path=str(tmp)))
        with open(local, "rb") as f:
            out[info.path] = sha256_of(f)
        local.unlink()


# --- manifests -------------------------------------------------------------------------------


def write_manifest(
    header: dict[str, Any], records: Iterable[Record], out: IO[bytes]
) -> dict[str, int]:
    """Write a manifest (header, then one line per record); return the count per kind."""
    counts = dict.fromkeys(SECTIONS.values(), 0)
    out.write(json.dumps({"format": FORMAT, "version": VERSION, **header}).encode() + b"\n")
    for kind, key, data in records:
        out.write(
            json.dumps({"kind": kind, "id": key, "data": data}, sort_keys=True).encode() + b"\n"
        )
        counts[SECTIONS[kind]] += 1
    return counts


def read_header(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        return _header(f.readline(), path)


def _header(line: bytes, path: Path) -> dict[str, Any]:
    try:
        header = json.loads(line)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise SourceError(f"{path} is not a seawall MLflow registry manifest")
    if header.get("version") != VERSION:
        raise SourceError(
            f"{path} is a registry manifest of version {header.get('version')}; "
            f"this seawall reads version {VERSION}"
        )
    return header


def load_manifest(path: Path) -> dict[str, dict[str, Any]]:
    """The registry a manifest file holds."""
    registry = empty_registry()
    try:
        with open(path, "rb") as f:
            _header(f.readline(), path)
            for number, line in enumerate(f, start=2):
                try:
                    record = json.loads(line)
                    registry[SECTIONS[record["kind"]]][record["id"]] = record["data"]
                except (ValueError, KeyError, TypeError):
                    raise SourceError(f"{path}: line {number} is not a registry record") from None
    except OSError as err:
        raise SourceError(f"cannot read the registry manifest {path}: {err.strerror}") from None
    return registry


def empty_registry() -> dict[str, dict[str, Any]]:
    return {section: {} for section in SECTIONS.values()}


def collect(records: Iterable[Record]) -> dict[str, dict[str, Any]]:
    registry = empty_registry()
    for kind, key, data in records:
        registry[SECTIONS[kind]][key] = data
    return registry


# --- comparing -------------------------------------------------------------------------------

ABSENT: Any = type("Absent", (), {"__repr__": lambda self: "(absent)"})()
_LABELS = {"experiments": "experiment", "runs": "run", "registered_models": "registered model"}


@dataclass(frozen=True)
class Difference:
    """One thing that differs: where (a path into the registry) and the two values."""

    path: tuple[str, ...]
    source: Any
    restored: Any

    @property
    def where(self) -> str:
        section, key, *rest = self.path
        return " / ".join([f"{_LABELS.get(section, section)} {key}", *rest])

    def __str__(self) -> str:
        a, b = self.source, self.restored
        if isinstance(a, list) and isinstance(b, list):  # a metric history: the first change
            i = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
            if i is None:
                return f"{self.where}: {len(a)} points != {len(b)} points"
            a, b = a[i], b[i]
        return f"{self.where}: {_show(a)} != {_show(b)}"

    def to_json(self) -> dict[str, Any]:
        def plain(v: Any) -> Any:
            return None if v is ABSENT else v

        return {
            "where": self.where,
            "path": list(self.path),
            "source": plain(self.source),
            "restored": plain(self.restored),
        }


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return f"present ({len(value)} entries)"
    text = repr(value)
    return text if len(text) <= 100 else text[:97] + "..."


def compare(source: dict[str, Any], restored: dict[str, Any]) -> list[Difference]:
    """Every difference between two registries; a thing present on one side only is
    one difference (not one per field of it)."""
    out: list[Difference] = []
    _diff((), source, restored, out)
    return out


def _diff(path: tuple[str, ...], a: Any, b: Any, out: list[Difference]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in b:
                out.append(Difference((*path, key), a[key], ABSENT))
            elif key not in a:
                out.append(Difference((*path, key), ABSENT, b[key]))
            else:
                _diff((*path, key), a[key], b[key], out)
    elif a != b:
        out.append(Difference(path, a, b))
