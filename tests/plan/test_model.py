"""The plan file: a valid plan normalized; every malformed one refused with located,
actionable messages."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from seawall.errors import PlanError, UsageError
from seawall.plan.model import format_duration, load_plan, parse_duration

VALID = """\
version: 1
repositories:
  primary:
    location: ./repo
    region: EU
    password_env: SEAWALL_PW
  replicas:
    - name: dr-us
      location: s3:dr-bucket/seawall
      region: us-east
      s3_endpoint: http://127.0.0.1:9000
defaults:
  rpo: 1h
  rto: 30m
  retention: {keep_last: 7, keep_daily: 14}
  residency: eu
  tags: [prod]
assets:
  - name: train-data
    kind: files
    paths: [data/train, /srv/shared/labels.csv]
    excludes: ["*.tmp"]
    rpo: 15m
    tags: [dataset]
  - name: checkpoints
    kind: checkpoints
    paths: [~/ckpt]
  - name: registry
    kind: mlflow
    backend_uri: sqlite:///mlflow.db
    artifacts: mlartifacts
  - name: app_db
    kind: sqlite
    path: app.db
  - name: features
    kind: postgres
    dsn: postgresql://feast@db.internal:5432/features
    tables: [public.user_features, item_features]
    retention: {keep_hourly: 24}
  - name: serving
    kind: config
    files: [conf/serve.yaml]
    env: [MODEL_NAME]
    secret_env: [OPENAI_API_KEY]
    secret_files: [conf/tls.key]
  - name: runtime
    kind: environment
    lock_files: [uv.lock]
"""


def _write(tmp_path: Path, text: str, name: str = "seawall.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_a_valid_plan_is_normalized(tmp_path: Path) -> None:
    plan = load_plan(_write(tmp_path, VALID))
    assert plan.text == VALID
    primary = plan.repositories.primary
    assert primary.location == str(tmp_path / "repo") and primary.region == "eu"
    assert plan.repositories.replicas[0].location == "s3:dr-bucket/seawall"
    data = plan.asset("train-data")
    assert data.kind == "files"
    assert data.paths == [tmp_path / "data/train", Path("/srv/shared/labels.csv")]
    assert data.rpo == timedelta(minutes=15) and data.rto == timedelta(minutes=30)  # default
    assert data.tags == ["dataset", "prod"] and data.residency == "eu"
    assert data.retention is not None and data.retention.describe() == "last 7, daily 14"
    assert plan.asset("checkpoints").paths == [Path.home() / "ckpt"]  # type: ignore[union-attr]
    registry = plan.asset("registry")
    assert registry.backend_uri == f"sqlite:///{tmp_path}/mlflow.db"  # type: ignore[union-attr]
    assert registry.artifacts == str(tmp_path / "mlartifacts")  # type: ignore[union-attr]
    features = plan.asset("features")
    assert features.retention is not None and features.retention.keep_hourly == 24
    with pytest.raises(UsageError, match="no asset 'nope'"):
        plan.asset("nope")


def test_durations() -> None:
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("7d") == timedelta(days=7)
    assert parse_duration("2w") == timedelta(days=14)
    assert format_duration(timedelta(minutes=90)) == "1h30m"
    assert format_duration(timedelta(days=8)) == "1w1d"
    for bad in ("15", "15 minutes", "m", "1h 30m", "", "-1h", 60):
        with pytest.raises(ValueError, match="invalid duration"):
            parse_duration(bad)


def _replace(old: str, new: str) -> str:
    assert old in VALID, old
    return VALID.replace(old, new, 1)


#: (plan text, the located problem its message must contain)
MALFORMED = [
    ("version: 1\nrepositories: [\n", "seawall.yaml:3:1: not valid YAML"),
    ("- just\n- a list\n", "seawall.yaml:1:1: the plan must be a mapping"),
    (_replace("version: 1", "version: 2"), "1:1: version: unsupported plan version 2"),
    (
        _replace("    rpo: 15m", "    rpo: 15 minutes"),
        "23:5: assets[0].rpo: invalid duration '15 minutes'",
    ),
    (_replace("    rpo: 15m", "    rpo: 900"), "23:5: assets[0].rpo: invalid duration 900"),
    (_replace("    rpo: 15m", "    rop: 15m"), "23:5: assets[0].rop: unknown field; did you mean"),
    (
        _replace("kind: sqlite", "kind: sqlit"),
        "33:5: assets[3].kind: unknown kind 'sqlit' (did you mean 'sqlite'?)",
    ),
    (_replace("    path: app.db\n", ""), "32:5: assets[3].path: required field is missing"),
    (_replace("name: app_db", "name: App DB"), "32:5: assets[3].name: invalid name 'App DB'"),
    (
        _replace("name: app_db", "name: train-data"),
        "32:5: assets[3].name: 'train-data' is already the name of assets[0]",
    ),
    (
        _replace("[MODEL_NAME]", "[MODEL-NAME]"),
        "43:11: assets[5].env[0]: invalid environment variable name",
    ),
    (
        _replace("{keep_hourly: 24}", "{keep_hourly: 0}"),
        "39:5: assets[4].retention: this retention keeps nothing",
    ),
    (
        _replace("{keep_hourly: 24}", "{keep_hourly: -1}"),
        "39:17: assets[4].retention.keep_hourly: input should be greater",
    ),
    (
        _replace("    paths: [~/ckpt]", "    paths: ~/ckpt"),
        "27:5: assets[1].paths: expected a list, got a string",
    ),
    (_replace("    paths: [~/ckpt]", "    paths: []"), "27:5: assets[1].paths: must not be empty"),
    (
        _replace("  residency: eu\n", "  residency: us\n"),
        "16:3: defaults.residency: snapshots must stay in region 'us'",
    ),
    (
        _replace("/srv/shared/labels.csv", "/srv/train"),
        "21:25: assets[0].paths[1]: /srv/train would be stored as 'train'",
    ),
    (
        _replace(
            "    password_env: SEAWALL_PW\n",
            "    password_env: SEAWALL_PW\n    password_file: pw\n",
        ),
        "7:5: repositories.primary.password_file: give password_env or password_file, not both",
    ),
    (
        _replace(
            "tables: [public.user_features, item_features]", "schemas: [public]\n    tables: [x]"
        ),
        "39:5: assets[4].tables: give schemas or tables, not both",
    ),
    (
        _replace("location: s3:dr-bucket/seawall", "location: ./repo"),
        "9:7: repositories.replicas[0].location: is the primary",
    ),
    (
        _replace("dsn: postgresql://feast@db.internal:5432/features", "dsn: 'host'"),
        "37:5: assets[4].dsn: not a PostgreSQL connection string",
    ),
    (
        _replace(
            "    secret_env: [OPENAI_API_KEY]\n", "    secret_env: [OPENAI_API_KEY]\n    env: [X]\n"
        ),
        "45:5: 'env' is given twice in the same mapping",
    ),
    (
        _replace("  - name: runtime\n    kind: environment\n", "  - name: runtime\n"),
        "46:5: assets[6].kind: no kind given",
    ),
    (
        _replace("defaults:\n", "defaults:\n  retension: 3\n"),
        "13:3: defaults.retension: unknown field; did you mean 'retention'? expected one of:",
    ),
]


@pytest.mark.parametrize(("text", "expected"), MALFORMED, ids=[m[1][:40] for m in MALFORMED])
def test_malformed_plans_get_located_messages(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(PlanError) as err:
        load_plan(path)
    message = str(err.value)
    assert expected in message, message
    assert str(path) in message  # every problem names the file
    assert err.value.exit_code == 2


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = _replace("    rpo: 15m", "    rpo: soon").replace("kind: sqlite", "kind: sqlit")
    with pytest.raises(PlanError) as err:
        load_plan(_write(tmp_path, text))
    assert len(err.value.problems) == 2
    assert "(2 problems)" in str(err.value)
    lines = [p.split(": ")[0] for p in err.value.problems]
    assert lines == sorted(lines, key=lambda w: int(w.split(":")[1]))  # in file order


def test_an_unreadable_plan(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match=r"cannot read the plan file .*missing\.yaml"):
        load_plan(tmp_path / "missing.yaml")
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(PlanError, match="not UTF-8"):
        load_plan(tmp_path / "bin.yaml")
    with pytest.raises(PlanError, match="the plan must be a mapping"):
        load_plan(_write(tmp_path, ""))


def test_a_password_in_the_dsn_is_not_echoed(tmp_path: Path) -> None:
    text = _replace(
        "dsn: postgresql://feast@db.internal:5432/features", "dsn: 'host=x password=Hunter2 ='"
    )
    with pytest.raises(PlanError) as err:
        load_plan(_write(tmp_path, text))
    assert "not a PostgreSQL connection string" in str(err.value)
    assert "Hunter2" not in str(err.value)
