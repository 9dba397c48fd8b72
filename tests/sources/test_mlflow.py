"""The MLflow source against a real tracking server, on SQLite and on PostgreSQL.

A module-scoped server per backend holds a registry made by real training
runs; it is captured into a repository once, and the tests restore that
capture into new stores, compare, tamper, and bring things back into the
live server. Tests that change the live server come after those that
compare with it. Last, without that server: a registry of an older MLflow
schema with absolute artifact locations, and an S3 artifact store.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from seawall.errors import SourceError, UsageError
from seawall.operations.restore import restore
from seawall.operations.verify_mlflow import verify_mlflow
from seawall.repository.repo import Repository
from seawall.sources.base import Captured
from seawall.sources.mlflow import MlflowServer, MlflowSource
from seawall.sources.mlflow_registry import load_manifest
from seawall.storage import LocalStorage
from tests.conftest import FAST_KDF, PASSWORD, SMALL_CHUNKS, SMALL_PACK
from tests.interfaces.cli.conftest import SEAWALL
from tests.postgres import PgDatabase, new_database
from tests.s3_server import MotoServer, free_port
from tests.sources.helpers import capture_and_store
from tests.sources.mlflow_server import (
    EPOCH_MS,
    MLFLOW_ENV,
    MODEL,
    Sample,
    client,
    mlflow_server,
    populate,
)

pytestmark = [
    # MLflow's own deprecations: model stages (the registry still has them) and
    # SQLAlchemy loader options inside MLflow's store.
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SADeprecationWarning"),
]


@dataclass
class Live:
    """A running tracking server with the sample registry, and its capture."""

    kind: str
    backend_uri: str
    artifacts: Path
    server: MlflowServer
    sample: Sample
    source: MlflowSource
    repo: Repository
    captured: Captured
    #: the capture restored from the repository (the asset's files)
    restored: Path
    pg: PgDatabase | None

    def new_backend(self, tmp: Path, name: str) -> str:
        """A URI for a backend store that does not exist yet."""
        if self.pg is None:
            return f"sqlite:///{tmp / f'{name}.db'}"
        return f"postgresql+psycopg://postgres@127.0.0.1:5432/{self.pg.name}_{name}"


@pytest.fixture(scope="module", autouse=True)
def _mlflow_env() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        for key, value in MLFLOW_ENV.items():
            mp.setenv(key, value)
        yield


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    kind: str = request.param
    base = tmp_path_factory.mktemp(f"mlflow-{kind}")
    with new_database() if kind == "postgresql" else nullcontext() as pg:
        if pg is None:
            backend_uri = f"sqlite:///{base / 'mlflow.db'}"
        else:
            backend_uri = f"postgresql+psycopg://postgres@127.0.0.1:5432/{pg.name}"
        artifacts = base / "artifacts"
        with mlflow_server(backend_uri, artifacts, base / "server.log") as server:
            sample = populate(server.url, base / "work")
            source = MlflowSource(backend_uri, str(artifacts), "registry")
            repo = Repository.init(
                LocalStorage(base / "repo"),
                PASSWORD,
                kdf=FAST_KDF,
                chunker=SMALL_CHUNKS,
                pack_size=SMALL_PACK,
            )
            snap, captured = capture_and_store(repo, source, base / "stage", "registry")
            restore(repo, snap, base / "restored")
            yield Live(
                kind,
                backend_uri,
                artifacts,
                server,
                sample,
                source,
                repo,
                captured,
                base / "restored",
                pg,
            )


def test_capture_records_version_schema_and_lineage(live: Live) -> None:
    facts = live.captured.consistency
    import mlflow

    assert facts["mlflow_version"] == mlflow.__version__
    assert facts["schema_revision"] == _revision(live)
    assert facts["runs"] == 4 and facts["registered_models"] == 1 and facts["model_versions"] == 2
    assert live.captured.lineage == {
        "model_versions": [
            {"name": MODEL, "version": "1", "run_id": live.sample.run_ids[0]},
            {"name": MODEL, "version": "2", "run_id": live.sample.run_ids[1]},
        ]
    }
    # Artifacts were stored file for file.
    stored = sorted(
        p.relative_to(live.restored / "artifacts").as_posix()
        for p in (live.restored / "artifacts").rglob("*")
        if p.is_file()
    )
    assert stored == sorted(
        p.relative_to(live.artifacts).as_posix() for p in live.artifacts.rglob("*") if p.is_file()
    )
    # The manifest agrees with the live server in everything.
    result = verify_mlflow(str(live.restored), live.server.url)
    assert result.differences == []
    assert result.counts["source"] == {
        "experiments": 3,
        "runs": 4,
        "registered_models": 1,
        "model_versions": 2,
    }


def test_restore_builds_new_stores_keeping_identities(live: Live, tmp_path: Path) -> None:
    backend = live.new_backend(tmp_path, "restored")
    artifacts = tmp_path / "restored-artifacts"
    facts = live.source.restore(
        live.restored, {"backend_uri": backend, "artifacts": str(artifacts)}
    )
    assert facts["schema_revision"] == _revision(live)
    assert "mlflow server --backend-store-uri" in facts["server_command"]
    # Compared through the MLflow client, the restored stores are the source server's
    # registry: same ids, names, times, stages, aliases, tags, metric histories, artifacts.
    result = verify_mlflow(live.server.url, backend, restored_artifacts=str(artifacts))
    assert result.differences == [], [str(d) for d in result.differences]
    restored = client(backend)
    version = restored.get_model_version(MODEL, "1")
    assert version.current_stage == "Production" and version.run_id == live.sample.run_ids[0]
    assert restored.get_model_version_by_alias(MODEL, "champion").version in ("2", 2)


def _revision(live: Live) -> str:
    if live.pg is None:
        path = live.backend_uri.removeprefix("sqlite:///")
        with sqlite3.connect(path) as conn:
            return str(conn.execute("SELECT version_num FROM alembic_version").fetchone()[0])
    with live.pg.connect() as conn:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        assert row is not None
        return str(row[0])


def test_verify_reports_exactly_what_changed(live: Live, tmp_path: Path) -> None:
    backend = live.new_backend(tmp_path, "tampered")
    artifacts = tmp_path / "tampered-artifacts"
    live.source.restore(live.restored, {"backend_uri": backend, "artifacts": str(artifacts)})
    run_id = live.sample.run_ids[0]
    # One metric point, one tag, one artifact byte.
    with _connect(live, backend) as conn:
        conn.execute(
            _sql(
                live,
                "UPDATE metrics SET value = 0.5 WHERE run_uuid = ? AND key = 'loss' AND step = 3",
            ),
            (run_id,),
        )
    client(backend).set_tag(live.sample.run_ids[1], "framework", "torch")
    weights = next(artifacts.rglob(f"{run_id}/artifacts/model/weights.npy"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))

    result = verify_mlflow(str(live.restored), backend, restored_artifacts=str(artifacts))
    assert sorted(d.path for d in result.differences) == sorted(
        [
            ("runs", run_id, "metrics", "loss"),
            ("runs", live.sample.run_ids[1], "tags", "framework"),
            ("runs", run_id, "artifacts", "model/weights.npy"),
        ]
    )
    by_path = {d.path[-1]: d for d in result.differences}
    assert by_path["framework"].source == "numpy" and by_path["framework"].restored == "torch"
    # A history is shown by its first differing point: [step, timestamp, value].
    assert str(by_path["loss"]).endswith(f"!= [3, {EPOCH_MS + 3}, 0.5]")


def test_verify_command_lists_differences_and_exits_1(live: Live, tmp_path: Path) -> None:
    manifest = live.restored / "registry.jsonl"
    lines = manifest.read_text().splitlines()
    changed = []
    for line in lines:
        record = json.loads(line)
        if record.get("kind") == "registered_model":
            record["data"]["aliases"]["champion"] = "1"
        changed.append(json.dumps(record))
    other = tmp_path / "registry.jsonl"
    other.write_text("\n".join(changed) + "\n")

    def verify(*args: str | Path) -> subprocess.CompletedProcess[str]:
        argv = [SEAWALL, "verify", "mlflow", *map(str, args)]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120)

    same = verify(manifest, live.restored)
    assert same.returncode == 0, same.stderr
    assert "no differences: 3 experiments, 4 runs, 1 registered models (2 versions)" in same.stdout
    differ = verify(manifest, other)
    assert differ.returncode == 1, differ.stderr
    assert differ.stdout.splitlines() == [
        f"registered model {MODEL} / aliases / champion: '2' != '1'",
        "1 difference (3 experiments, 4 runs, 1 registered models (2 versions) in the source)",
    ]
    as_json = json.loads(verify(manifest, other, "--json").stdout)
    assert as_json["ok"] is False and as_json["differences"][0]["restored"] == "1"
    missing = verify(tmp_path / "nowhere", other)
    assert missing.returncode == 2 and "not a tracking server URL" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_restore_refuses_existing_stores_and_bad_options(live: Live, tmp_path: Path) -> None:
    taken_backend = live.new_backend(tmp_path, "taken")
    fresh = tmp_path / "fresh-artifacts"
    live.source.restore(live.restored, {"backend_uri": taken_backend, "artifacts": str(fresh)})
    before = _snapshot_of(live, taken_backend, fresh)
    # The backend store exists: refused, and nothing was written anywhere.
    other = tmp_path / "other-artifacts"
    with pytest.raises(SourceError, match="exists"):
        live.source.restore(live.restored, {"backend_uri": taken_backend, "artifacts": str(other)})
    assert not other.exists()
    assert _snapshot_of(live, taken_backend, fresh) == before
    # The artifact store is not empty: refused before a database is made.
    new_backend = live.new_backend(tmp_path, "new")
    with pytest.raises(SourceError, match="not empty"):
        live.source.restore(live.restored, {"backend_uri": new_backend, "artifacts": str(fresh)})
    assert not _backend_exists(live, new_backend)
    assert _snapshot_of(live, taken_backend, fresh) == before
    with pytest.raises(UsageError, match="artifacts"):
        live.source.restore(live.restored, {"backend_uri": new_backend})
    with pytest.raises(UsageError, match="takes no restore option 'port'"):
        live.source.restore(live.restored, {"port": "5000"})
    # verify does not open (and so initialise) a database that is not MLflow's.
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE t (x)")
    content = foreign.read_bytes()
    with pytest.raises(UsageError, match="not an MLflow database"):
        verify_mlflow(f"sqlite:///{foreign}", str(live.restored))
    assert foreign.read_bytes() == content
    with pytest.raises(UsageError, match="unsupported MLflow backend store 'mysql'"):
        live.source.restore(
            live.restored, {"backend_uri": "mysql://u:secret@h/db", "artifacts": "x"}
        )


def test_one_model_and_one_run_come_back_into_the_live_server(live: Live) -> None:
    from seawall.sources.mlflow import restore_registered_model, restore_run

    mlflow = client(live.server.url)
    # The live server moved on after the capture: a new run...
    extra = mlflow.create_run(live.sample.experiment_id, run_name="after-capture").info.run_id
    baseline = verify_mlflow(str(live.restored), live.server.url).differences
    assert ("runs", extra) in [d.path for d in baseline]
    # ...then the registered model was deleted, and a training run deleted for good.
    mlflow.delete_registered_model(MODEL)
    gone = live.sample.run_ids[0]
    mlflow.delete_run(gone)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "mlflow",
            "gc",
            "--backend-store-uri",
            live.backend_uri,
            "--run-ids",
            gone,
        ],
        env={**os.environ, "MLFLOW_TRACKING_URI": live.server.url},
        check=True,
        capture_output=True,
    )
    assert not [p for p in live.artifacts.rglob("*") if gone in p.parts and p.is_file()]
    # The model through the source's restore options (what `restore --plan -o` passes).
    facts = live.source.restore(
        live.restored,
        {"model": MODEL, "backend_uri": live.backend_uri, "artifacts": str(live.artifacts)},
    )
    assert facts["versions"] == ["1", "2"]
    with pytest.raises(SourceError, match="already has a registered model"):
        restore_registered_model(
            live.restored, MODEL, backend_uri=live.backend_uri, artifacts=str(live.artifacts)
        )
    run_facts = restore_run(
        live.restored, gone, backend_uri=live.backend_uri, artifacts=str(live.artifacts)
    )
    assert run_facts["artifact_files"] == 2
    # Back as captured, and nothing else changed: the same differences as before, and
    # what gc purged besides (MLflow's gc also empties the trash of experiments).
    after = verify_mlflow(str(live.restored), live.server.url).differences
    purged = {("experiments", live.sample.deleted_experiment), ("runs", live.sample.probe_run)}
    assert {d.path for d in after} == {d.path for d in baseline} | purged
    assert {str(d) for d in after if d.path not in purged} == {str(d) for d in baseline}
    # A run whose experiment is gone too is refused, with nothing written.
    with pytest.raises(SourceError, match="no longer has"):
        restore_run(
            live.restored,
            live.sample.probe_run,
            backend_uri=live.backend_uri,
            artifacts=str(live.artifacts),
        )
    assert mlflow.get_model_version_by_alias(MODEL, "champion").version in ("2", 2)
    # Once back, it is not restored twice.
    with pytest.raises(SourceError, match="already has a registered model"):
        restore_registered_model(
            live.restored, MODEL, backend_uri=live.backend_uri, artifacts=str(live.artifacts)
        )
    with pytest.raises(SourceError, match="already has run"):
        restore_run(
            live.restored, gone, backend_uri=live.backend_uri, artifacts=str(live.artifacts)
        )
    assert verify_mlflow(str(live.restored), live.server.url).differences == after


def _connect(live: Live, backend: str) -> Any:
    if live.pg is None:
        return sqlite3.connect(backend.removeprefix("sqlite:///"))
    import psycopg

    return psycopg.connect(f"host=127.0.0.1 user=postgres dbname={backend.rsplit('/', 1)[1]}")


def _sql(live: Live, sql: str) -> str:
    return sql if live.pg is None else sql.replace("?", "%s")


def _backend_exists(live: Live, backend: str) -> bool:
    if live.pg is None:
        return Path(backend.removeprefix("sqlite:///")).exists()
    assert live.pg is not None
    return live.pg.exists(backend.rsplit("/", 1)[1])


def _snapshot_of(live: Live, backend: str, artifacts: Path) -> tuple[Any, ...]:
    """What a failed restore must not have changed: the rows and the files."""
    with _connect(live, backend) as conn:
        rows = sorted(conn.execute("SELECT run_uuid, key, value, step FROM metrics").fetchall())
    files = sorted((p.as_posix(), p.read_bytes()) for p in artifacts.rglob("*") if p.is_file())
    return rows, files


def test_capture_while_runs_are_logged_holds_every_artifact_it_names(
    live: Live, tmp_path: Path
) -> None:
    from tests.sources.mlflow_server import log_training_run

    stop = threading.Event()
    logged: list[str] = []

    def writer() -> None:
        mlflow = client(live.server.url)
        seed = 100
        while not stop.is_set():
            logged.append(log_training_run(mlflow, live.sample.experiment_id, seed, tmp_path))
            seed += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        _wait_for(lambda: len(logged) >= 2)
        before = len(logged)
        snap, captured = capture_and_store(live.repo, live.source, tmp_path / "stage", "registry")
        _wait_for(lambda: len(logged) >= before + 2)
    finally:
        stop.set()
        thread.join()
    restore(live.repo, snap, tmp_path / "files")
    manifest = load_manifest(tmp_path / "files" / "registry.jsonl")
    trained = [r for r in manifest["runs"].values() if r["tags"].get("framework") == "numpy"]
    finished = [r for r in trained if r["status"] == "FINISHED"]
    assert len(finished) >= 2 + before  # the sample's and the writer's, as of the instant
    for run in finished:  # a run finished by then had logged its model: it is all there
        assert set(run["artifacts"]) == {"model/weights.npy", "model/meta.json"}
    backend = live.new_backend(tmp_path, "during")
    artifacts = tmp_path / "during-artifacts"
    live.source.restore(tmp_path / "files", {"backend_uri": backend, "artifacts": str(artifacts)})
    result = verify_mlflow(str(tmp_path / "files"), backend, restored_artifacts=str(artifacts))
    assert result.differences == [], [str(d) for d in result.differences]
    assert captured.consistency["runs"] == len(manifest["runs"])


def _wait_for(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# --- without the shared server: an older schema, absolute locations, S3 -----------------------

OLD_REVISION = "400f98739977"  # MLflow 3.0's schema (logged models), before workspaces


def old_registry(db: Path, artifacts: Path) -> str:
    """A registry written by an older MLflow (schema OLD_REVISION) whose server kept
    artifacts at absolute locations (no proxy); returns its run id."""
    import numpy as np
    import sqlalchemy
    from alembic import command
    from mlflow.store.db.utils import _get_alembic_config
    from mlflow.store.tracking.dbmodels.initial_models import Base as InitialBase

    engine = sqlalchemy.create_engine(f"sqlite:///{db}")
    InitialBase.metadata.create_all(engine)
    config = _get_alembic_config(f"sqlite:///{db}")  # type: ignore[no-untyped-call]
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, OLD_REVISION)
    engine.dispose()
    run = "0123456789abcdef0123456789abcdef"
    run_dir = f"{artifacts}/1/{run}/artifacts"
    t = EPOCH_MS
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO experiments VALUES (?, ?, ?, 'active', ?, ?)",
            [
                (0, "Default", f"{artifacts.as_uri()}/0", t, t),
                (1, "fraud", f"{artifacts.as_uri()}/1", t, t + 1),
            ],
        )
        conn.execute(
            "INSERT INTO runs VALUES (?, 'train', 'LOCAL', 'train.py', '', 'ana', 'FINISHED', "
            "?, ?, '', 'active', ?, 1, NULL)",
            (run, t, t + 9, run_dir),
        )
        conn.execute("INSERT INTO params VALUES ('lr', '0.1', ?)", (run,))
        conn.execute("INSERT INTO tags VALUES ('mlflow.runName', 'train', ?)", (run,))
        for step, loss in enumerate([4.0, 2.5, 1.25]):
            conn.execute(
                "INSERT INTO metrics VALUES ('loss', ?, ?, ?, ?, 0)", (loss, t + step, run, step)
            )
        conn.execute("INSERT INTO latest_metrics VALUES ('loss', 1.25, ?, 2, 0, ?)", (t + 2, run))
        conn.execute("INSERT INTO registered_models VALUES ('fraud-detector', ?, ?, 'old')", (t, t))
        conn.execute(
            "INSERT INTO model_versions VALUES ('fraud-detector', 1, ?, ?, '', NULL, 'Staging', "
            "?, ?, 'READY', NULL, '', ?)",
            (t, t, f"{run_dir}/model", run, f"{Path(run_dir).as_uri()}/model"),
        )
        conn.execute(
            "INSERT INTO registered_model_aliases VALUES ('champion', 1, 'fraud-detector')"
        )
    (Path(run_dir) / "model").mkdir(parents=True)
    np.save(Path(run_dir) / "model" / "weights.npy", np.arange(8.0))
    return run


def test_older_schema_is_upgraded_in_the_restored_copy_only(
    local_repo: tuple[Path, Repository], tmp_path: Path
) -> None:
    import hashlib

    _, repo = local_repo
    db, artifacts = tmp_path / "old.db", tmp_path / "old-artifacts"
    run = old_registry(db, artifacts)
    source_bytes = hashlib.sha256(db.read_bytes()).hexdigest()
    source = MlflowSource(f"sqlite:///{db}", str(artifacts), "old")
    snap, captured = capture_and_store(repo, source, tmp_path / "stage", "old")
    assert captured.consistency["schema_revision"] == OLD_REVISION
    restore(repo, snap, tmp_path / "files")
    new_db, new_artifacts = tmp_path / "new.db", tmp_path / "new-artifacts"
    port = free_port()
    facts = source.restore(
        tmp_path / "files",
        {
            "backend_uri": f"sqlite:///{new_db}",
            "artifacts": str(new_artifacts),
            "serve": f"127.0.0.1:{port}",
        },
    )
    try:
        # The copy was brought to this MLflow's schema, and a server runs on it...
        assert facts["upgraded_from"] == OLD_REVISION and facts["schema_revision"] != OLD_REVISION
        assert facts["server_url"] == f"http://127.0.0.1:{port}"
        # ...holding the captured registry, its artifacts found at their new place.
        result = verify_mlflow(str(tmp_path / "files"), facts["server_url"])
        assert result.differences == [], [str(d) for d in result.differences]
    finally:
        MlflowServer.serving.pop(facts["server_url"]).stop()
    with sqlite3.connect(new_db) as conn:
        assert (
            conn.execute(
                "SELECT artifact_location FROM experiments WHERE experiment_id = 1"
            ).fetchone()[0]
            == f"{new_artifacts.as_uri()}/1"
        )
        assert (
            conn.execute("SELECT artifact_uri FROM runs").fetchone()[0]
            == f"{new_artifacts}/1/{run}/artifacts"
        )
        source_col, storage = conn.execute(
            "SELECT source, storage_location FROM model_versions"
        ).fetchone()
    assert source_col == f"{new_artifacts}/1/{run}/artifacts/model"
    assert storage == f"{(new_artifacts / '1' / run / 'artifacts').as_uri()}/model"
    # The source was only read.
    assert hashlib.sha256(db.read_bytes()).hexdigest() == source_bytes


def test_s3_artifact_store_round_trip(
    s3_server: MotoServer,
    s3_bucket: str,
    local_repo: tuple[Path, Repository],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, repo = local_repo
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", s3_server.endpoint)
    backend = f"sqlite:///{tmp_path / 'src.db'}"
    store = f"s3://{s3_bucket}/mlflow"
    with mlflow_server(backend, store, tmp_path / "server.log") as server:
        sample = populate(server.url, tmp_path / "work")
        source = MlflowSource(backend, store, "s3-registry")
        snap, captured = capture_and_store(repo, source, tmp_path / "stage", "s3-registry")
        assert captured.consistency["artifacts"]["files"] == 4  # two runs, two files each
        restore(repo, snap, tmp_path / "files")
        new_backend, new_store = f"sqlite:///{tmp_path / 'new.db'}", f"s3://{s3_bucket}/restored"
        source.restore(tmp_path / "files", {"backend_uri": new_backend, "artifacts": new_store})
        result = verify_mlflow(server.url, new_backend, restored_artifacts=new_store)
        assert result.differences == [], [str(d) for d in result.differences]
    keys = {
        o["Key"]
        for o in s3_server.admin.list_objects_v2(Bucket=s3_bucket, Prefix="restored/")["Contents"]
    }
    assert f"restored/1/{sample.run_ids[0]}/artifacts/model/weights.npy" in keys
    # An S3 prefix that holds anything is not restored into.
    with pytest.raises(SourceError, match="not empty"):
        source.restore(
            tmp_path / "files",
            {"backend_uri": f"sqlite:///{tmp_path / 'x.db'}", "artifacts": new_store},
        )
    assert not (tmp_path / "x.db").exists()
