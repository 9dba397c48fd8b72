"""`plan check`'s survey: what each asset would protect, and what stands in the way."""

from __future__ import annotations

from pathlib import Path

import pytest

from seawall.plan.check import survey
from seawall.plan.model import load_plan
from tests.conftest import make_files
from tests.postgres import PgDatabase


def test_survey(pg_database: PgDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pg_database.connect() as conn:
        conn.execute("CREATE TABLE a (i int); CREATE TABLE b (j text)")
        conn.execute("INSERT INTO a SELECT generate_series(1, 1000)")
    make_files(tmp_path / "data", {"x.bin": b"x" * 3000, "skip.tmp": b"t", "d/y": b"y"})
    monkeypatch.setenv("API_TOKEN", "value-never-read")
    monkeypatch.delenv("UNSET_ONE", raising=False)
    password_dsn = pg_database.dsn.replace("user=postgres", "user=postgres password=pw")
    (tmp_path / "seawall.yaml").write_text(
        f"""\
version: 1
repositories:
  primary: {{location: ./repo, region: eu}}
  replicas: [{{name: us, location: s3:b/p, region: us}}]
defaults: {{residency: eu, rpo: 1h, retention: {{keep_last: 3}}}}
assets:
  - {{name: data, kind: files, paths: [data], excludes: ["*.tmp"]}}
  - {{name: db, kind: postgres, dsn: "{password_dsn}", tables: [a]}}
  - {{name: nowhere, kind: postgres, dsn: "host=127.0.0.1 port=1 dbname=x"}}
  - {{name: cfg, kind: config, secret_env: [API_TOKEN, UNSET_ONE]}}
  - {{name: registry, kind: mlflow, backend_uri: "sqlite:///gone.db", artifacts: arts}}
"""
    )
    report = survey(load_plan(tmp_path / "seawall.yaml"))
    data, db, nowhere, cfg, registry = report.assets
    assert data.policies == {
        "rpo": "1h",
        "rto": None,
        "retention": "last 3",
        "residency": "eu",
        "tags": [],
    }
    assert (data.items[0].files, data.items[0].bytes) == (2, 3001)
    assert db.items[0].what.startswith("PostgreSQL postgres@127.0.0.1:5432/")
    assert db.items[0].note.startswith("1 table, PostgreSQL ") and db.items[0].bytes
    assert db.problems == [
        "the dsn holds a password: put it in $PGPASSWORD or ~/.pgpass instead "
        "(the plan is stored with every group)"
    ]
    assert "cannot connect to PostgreSQL" in nowhere.problems[0]
    assert [(i.what, i.note) for i in cfg.items] == [
        ("secret variable $API_TOKEN", "set"),
        ("secret variable $UNSET_ONE", "not set"),
    ]
    assert cfg.problems == ["$UNSET_ONE is missing"]
    assert len(registry.problems) == 2 and "gone.db does not exist" in registry.problems[0]
    assert len(report.notes) == 5 and "it will not be copied to replica us" in report.notes[0]
    assert "value-never-read" not in repr(report)

    offline = survey(load_plan(tmp_path / "seawall.yaml"), probe=False)
    assert offline.assets[0].items[0].files is None
    assert [p for a in offline.assets for p in a.problems] == [db.problems[0]]
