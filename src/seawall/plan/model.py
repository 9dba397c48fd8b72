"""The plan file (``seawall.yaml``): what to protect, where, and under which policies.

:func:`load_plan` reads a plan and either returns a valid :class:`Plan` or
raises :class:`PlanError` listing every problem, each located: the file, the
line and column, the field path (``assets[2].rpo``) and what was expected.
A valid plan is normalized: relative paths are absolute (resolved against
the plan file's directory), durations are ``timedelta``, and every asset's
policies have their ``defaults`` filled in, so what uses a plan never looks
at ``defaults`` again. The schema is documented in docs/plan.md.
"""

from __future__ import annotations

import difflib
import re
import types
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from seawall.errors import PlanError, UsageError
from seawall.repository.residency import normalize_label

__all__ = [
    "KINDS",
    "Asset",
    "Plan",
    "Repository",
    "Retention",
    "Schedule",
    "format_duration",
    "load_plan",
    "parse_duration",
    "parse_plan",
]

# --- field types ----------------------------------------------------------------------------

_DURATION = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value: object) -> timedelta:
    """``15m``, ``1h``, ``7d``, ``1h30m``: a number and a unit (s, m, h, d, w), repeated."""
    text = value.strip() if isinstance(value, str) else ""
    parts = _DURATION.findall(text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise ValueError(
            f"invalid duration {value!r}: expected a number and a unit "
            "(s, m, h, d or w), e.g. 15m, 1h, 7d or 1h30m"
        )
    return timedelta(seconds=sum(int(n) * _UNITS[u] for n, u in parts))


def approx_duration(seconds: float) -> str:
    """A duration for people to read, to two or three figures: ``850ms``, ``4.2s``,
    ``4s``, ``15min``, ``3.5h``, ``2d`` (reports, status, alerts)."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    size, unit = _unit(seconds)
    return f"{seconds / size:.1f}".rstrip("0").rstrip(".") + unit


def _unit(seconds: float) -> tuple[float, str]:
    for limit, size, unit in ((120, 1, "s"), (7200, 60, "min"), (172800, 3600, "h")):
        if seconds < limit:
            return size, unit
    return 86400, "d"


def format_duration(value: timedelta) -> str:
    """The shortest form :func:`parse_duration` reads back: ``1h30m``, ``7d``."""
    seconds = int(value.total_seconds())
    if not seconds:
        return "0s"
    out = ""
    for unit, size in sorted(_UNITS.items(), key=lambda u: -u[1]):
        if seconds >= size:
            out += f"{seconds // size}{unit}"
            seconds %= size
    return out


def _matching(pattern: str, what: str, hint: str = "") -> Any:
    regex = re.compile(pattern)

    def check(value: str) -> str:
        if not regex.fullmatch(value):
            raise ValueError(f"invalid {what} {value!r}" + (f": {hint}" if hint else ""))
        return value

    return AfterValidator(check)


def _cron(value: str) -> str:
    from croniter import croniter

    fields = value.split()
    if len(fields) not in (5, 6) or not croniter.is_valid(value):
        raise ValueError(
            f"invalid cron expression {value!r}: expected five fields, minute hour "
            "day-of-month month day-of-week (e.g. '0 3 * * *' for 03:00 every day), "
            "and optionally a sixth, seconds"
        )
    return " ".join(fields)


def _region(value: str) -> str:
    try:
        return normalize_label(value)
    except UsageError as err:
        raise ValueError(str(err)) from None


def _base(info: ValidationInfo) -> Path:
    context = info.context or {}
    return Path(context.get("base", "."))


def _plan_path(value: Path, info: ValidationInfo) -> Path:
    """Relative paths are relative to the plan file's directory, not the current one."""
    path = value.expanduser()
    return path if path.is_absolute() else _base(info) / path


def _location(value: str, info: ValidationInfo) -> str:
    """A repository location as the CLI's --repo takes it; a relative directory is made
    absolute against the plan file's directory."""
    if not value.strip():
        raise ValueError("the location must not be empty")
    if re.match(r"(s3|rest|memory):", value):
        return value
    path = Path(value.removeprefix("local:")).expanduser()
    return str(path if path.is_absolute() else _base(info) / path)


def _dsn(value: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    try:
        conninfo_to_dict(value)
    except Exception:  # psycopg's message may quote the string, and so a password
        raise ValueError(
            "not a PostgreSQL connection string: use a URI "
            "(postgresql://USER@HOST:PORT/DBNAME) or key=value pairs "
            "(host=... dbname=...)"
        ) from None
    return value


def _mlflow_backend(value: str, info: ValidationInfo) -> str:
    if not re.match(r"(sqlite|postgresql|postgres|mysql|mssql)[+a-z0-9]*://", value):
        raise ValueError(
            "invalid backend_uri: expected a database URI such as sqlite:///mlflow.db "
            "or postgresql://USER@HOST/DB"
        )
    prefix = "sqlite:///"
    if value.startswith(prefix) and not value.startswith(prefix + "/"):
        return prefix + str(_base(info) / value[len(prefix) :])
    return value


def _artifacts(value: str, info: ValidationInfo) -> str:
    if "://" in value:
        return value
    return str(_plan_path(Path(value), info))


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
Region = Annotated[str, AfterValidator(_region)]
Cron = Annotated[str, AfterValidator(_cron)]
PlanPath = Annotated[Path, AfterValidator(_plan_path)]
Name = Annotated[
    str,
    _matching(
        r"[a-z][a-z0-9_-]{0,62}", "name", "use a-z, 0-9, '-' and '_', starting with a letter"
    ),
]
EnvName = Annotated[str, _matching(r"[A-Za-z_][A-Za-z0-9_]*", "environment variable name")]
Tag = Annotated[str, _matching(r"[^\s,]+", "tag", "no spaces or commas")]
_IDENT = r"[A-Za-z_][A-Za-z0-9_$]{0,62}"
SqlName = Annotated[str, _matching(_IDENT, "schema name")]
TableName = Annotated[
    str, _matching(rf"(?:{_IDENT}\.)?{_IDENT}", "table name", "expected TABLE or SCHEMA.TABLE")
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- policies -------------------------------------------------------------------------------


class Retention(_Model):
    """How many snapshots to keep (as ``seawall forget --keep-*``)."""

    keep_last: NonNegativeInt = 0
    keep_hourly: NonNegativeInt = 0
    keep_daily: NonNegativeInt = 0
    keep_weekly: NonNegativeInt = 0
    keep_monthly: NonNegativeInt = 0
    keep_yearly: NonNegativeInt = 0

    @model_validator(mode="after")
    def _keeps_something(self) -> Retention:
        if not any(self.model_dump().values()):
            raise ValueError("this retention keeps nothing: set at least one keep_* above 0")
        return self

    def describe(self) -> str:
        return ", ".join(f"{k[5:]} {v}" for k, v in self.model_dump().items() if v)


class Schedule(_Model):
    """When ``seawall serve`` runs each job for an asset: cron expressions, evaluated in
    the server's local time. Assets whose backups fall due together are captured into
    one snapshot group."""

    backup: Cron | None = None
    #: copy the asset's snapshots to every replica ("copy" in the file: the
    #: attribute name would shadow pydantic's BaseModel.copy)
    copy_: Annotated[Cron | None, Field(alias="copy")] = None
    #: forget the asset's snapshots its retention does not keep, then prune
    forget: Cron | None = None
    #: restore the newest snapshot into a sandbox and verify it
    drill: Cron | None = None

    def jobs(self) -> dict[str, str]:
        """Job kind -> cron expression, for the jobs that are scheduled."""
        return {kind: cron for kind, cron in self.model_dump(by_alias=True).items() if cron}


class Policies(_Model):
    #: recovery point objective: the newest good copy is never older than this
    rpo: Duration | None = None
    #: recovery time objective: restoring must take no longer than this
    rto: Duration | None = None
    retention: Retention | None = None
    #: region label the asset's snapshots must stay in (see repository/residency.py)
    residency: Region | None = None
    tags: list[Tag] = []
    #: when ``seawall serve`` backs up, copies, forgets and drills (each field
    #: of an asset's schedule falls back to the same field in ``defaults``)
    schedule: Schedule | None = None


# --- drill hooks (plan/hooks.py) -----------------------------------------------------------

_CALLABLE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
#: a command: a string (run by /bin/sh -c) or a list of arguments
Command = str | Annotated[list[str], Field(min_length=1)]


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("the timeout must be longer than 0s")
    return value


Timeout = Annotated[Duration, AfterValidator(_positive)]


class SmokeTest(_Model):
    """Runs a model to record golden outputs at backup and compare with them in drills:
    ``call`` (a Python ``module:function``) or ``command``; a bare string is a call
    if it looks like one, else a command."""

    call: (
        Annotated[str, _matching(_CALLABLE.pattern, "callable", "expected module:function")] | None
    ) = None
    command: Command | None = None
    timeout: Timeout = timedelta(minutes=5)
    #: outputs match when |restored - golden| <= atol + rtol * |golden|
    rtol: NonNegativeFloat = 1e-5
    atol: NonNegativeFloat = 1e-6

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"call": value} if _CALLABLE.fullmatch(value.strip()) else {"command": value}
        return value

    @model_validator(mode="after")
    def _one_of(self) -> SmokeTest:
        if (self.call is None) == (self.command is None):
            raise ValueError("give a smoke test either call (module:function) or command")
        if isinstance(self.command, str) and not self.command.strip():
            raise ValueError("the command must not be empty")
        return self

    def describe(self) -> str:
        return self.call or (
            self.command if isinstance(self.command, str) else " ".join(self.command or [])
        )


class Check(_Model):
    """A command a drill runs once the asset is restored; exit status 0 passes."""

    name: str | None = None
    command: Command
    timeout: Timeout = timedelta(minutes=5)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"command": value} if isinstance(value, str) else value


# --- assets ---------------------------------------------------------------------------------


class _Asset(Policies):
    name: Name
    #: commands a drill runs on the restored asset (plan/hooks.py)
    checks: list[Check] = []


class FilesAsset(_Asset):
    """Files and directories (datasets...), stored as they are."""

    kind: Literal["files"]
    paths: Annotated[list[PlanPath], Field(min_length=1)]
    excludes: list[str] = []


class CheckpointsAsset(_Asset):
    """Model checkpoints (.safetensors, .pt, ONNX...)."""

    kind: Literal["checkpoints"]
    paths: Annotated[list[PlanPath], Field(min_length=1)]
    smoke_test: SmokeTest | None = None


class MlflowAsset(_Asset):
    """An MLflow tracking server's backend store and artifact store."""

    kind: Literal["mlflow"]
    backend_uri: Annotated[str, AfterValidator(_mlflow_backend)]
    artifacts: Annotated[str, AfterValidator(_artifacts)]
    smoke_test: SmokeTest | None = None


class SqliteAsset(_Asset):
    kind: Literal["sqlite"]
    path: PlanPath


class PostgresAsset(_Asset):
    kind: Literal["postgres"]
    #: a libpq connection string; a password is better in $PGPASSWORD or ~/.pgpass
    dsn: Annotated[str, AfterValidator(_dsn)]
    schemas: list[SqlName] = []
    tables: list[TableName] = []


class ConfigAsset(_Asset):
    """Configuration files and environment variables; the ``secret_*`` ones are never
    shown, and come back readable by their owner only."""

    kind: Literal["config"]
    files: list[PlanPath] = []
    env: list[EnvName] = []
    secret_env: list[EnvName] = []
    secret_files: list[PlanPath] = []

    @model_validator(mode="after")
    def _not_empty(self) -> ConfigAsset:
        if not (self.files or self.env or self.secret_env or self.secret_files):
            raise ValueError(
                "a config asset needs at least one of files, env, secret_env, secret_files"
            )
        return self


class EnvironmentAsset(_Asset):
    """The runtime: Python, packages, lock files, OS, CPU, CUDA and driver."""

    kind: Literal["environment"]
    lock_files: list[PlanPath] = []
    #: the interpreter whose packages to record (default: the one running seawall)
    python: PlanPath | None = None


AnyAsset = (
    FilesAsset
    | CheckpointsAsset
    | MlflowAsset
    | SqliteAsset
    | PostgresAsset
    | ConfigAsset
    | EnvironmentAsset
)
Asset = Annotated[AnyAsset, Field(discriminator="kind")]
KINDS: dict[str, type[_Asset]] = {
    get_args(cls.model_fields["kind"].annotation)[0]: cls for cls in get_args(AnyAsset)
}


# --- repositories and the plan --------------------------------------------------------------


class Repository(_Model):
    #: as the CLI's --repo: a directory, s3:BUCKET/PREFIX or rest:URL
    location: Annotated[str, AfterValidator(_location)]
    region: Region | None = None
    s3_endpoint: str | None = None
    #: where the repository password comes from (else the usual options and environment)
    password_env: EnvName | None = None
    password_file: PlanPath | None = None


class Replica(Repository):
    name: Name


class Repositories(_Model):
    primary: Repository
    replicas: list[Replica] = []


class Alerts(_Model):
    """Where ``seawall serve`` sends alerts (an RPO breached, a drill or a backup
    failed, a replica behind, a backup that looks like ransomware) and how often it
    checks (control/alerts.py). The plan text is stored, encrypted, with every group:
    a webhook URL holding a secret is as safe there as the repository."""

    webhooks: list[
        Annotated[str, _matching(r"https?://\S+", "webhook URL", "expected http(s)://...")]
    ] = []
    #: how often the server checks RPO targets and replicas
    check_every: Timeout = timedelta(minutes=1)
    #: an alert still firing is sent again after this long
    repeat: Timeout = timedelta(hours=6)


class Breaker(_Model):
    """A step's circuit breaker (seawall.degrade.breaker.CircuitBreaker)."""

    failure_rate: Annotated[float, Field(gt=0, le=1)] = 0.5
    slow_seconds: Annotated[float, Field(gt=0)] | None = None
    slow_rate: Annotated[float, Field(gt=0, le=1)] = 0.5
    window: Annotated[int, Field(ge=1)] = 20
    min_calls: Annotated[int, Field(ge=1)] = 5
    #: seconds before an open breaker lets a trial call through
    cooldown: Annotated[float, Field(gt=0)] = 10.0
    trial_calls: Annotated[int, Field(ge=1)] = 1


class DegradeStep(_Model):
    """One step of a fallback chain; its function is given in code, by this name."""

    name: Annotated[str, Field(min_length=1)]
    #: seconds (inference wants fractions); None: called inline, without a timeout
    timeout: Annotated[float, Field(gt=0)] | None = 1.0
    #: None: never skipped
    breaker: Breaker | None = Breaker()


class DegradeChain(_Model):
    """A fallback chain for an inference service (seawall.degrade): its steps in order,
    the primary first."""

    steps: Annotated[list[DegradeStep], Field(min_length=1)]

    @model_validator(mode="after")
    def _distinct(self) -> DegradeChain:
        names = [s.name for s in self.steps]
        if len(set(names)) != len(names):
            raise ValueError(f"the steps of a chain need distinct names, not {names}")
        return self


class Plan(_Model):
    version: Literal[1]
    repositories: Repositories
    defaults: Policies = Policies()
    assets: Annotated[list[Asset], Field(min_length=1)]
    alerts: Alerts = Alerts()
    #: fallback chains for inference services, by name (seawall.degrade.chain_from_plan)
    degrade: dict[str, DegradeChain] = {}

    _origin: str = PrivateAttr("")
    _text: str = PrivateAttr("")

    @property
    def origin(self) -> str:
        """Where the plan was read from (a file name), for messages."""
        return self._origin

    @property
    def text(self) -> str:
        """The plan file as written, recorded with each snapshot group."""
        return self._text

    def asset(self, name: str) -> AnyAsset:
        for asset in self.assets:
            if asset.name == name:
                return asset
        names = ", ".join(a.name for a in self.assets)
        raise UsageError(f"the plan {self.origin} has no asset {name!r} (it has {names})")


# --- loading and located errors ----------------------------------------------------------------


def load_plan(path: str | Path) -> Plan:
    """Read and validate the plan file at ``path`` (PlanError if it is invalid)."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        why = err.strerror if isinstance(err, OSError) else "not UTF-8 text"
        raise PlanError(f"cannot read the plan file {path}: {why}") from None
    return parse_plan(text, origin=str(path), base=path.absolute().parent)


def parse_plan(text: str, *, origin: str, base: Path) -> Plan:
    """Validate the plan ``text``; ``origin`` names it in messages, ``base`` is the
    directory relative paths are resolved against."""
    root, data = _parse_yaml(text, origin)
    if not isinstance(data, dict):
        raise PlanError(
            f"{origin}:1:1: the plan must be a mapping with version, repositories and assets"
        )
    try:
        plan = Plan.model_validate(data, context={"base": base})
    except ValidationError as err:
        problems = [_pydantic_problem(e, data) for e in err.errors()]
        raise _plan_error(origin, root, problems) from None
    problems = _cross_check(plan)
    if problems:
        raise _plan_error(origin, root, problems)
    _apply_defaults(plan)
    plan._origin, plan._text = origin, text
    return plan


Loc = tuple[str | int, ...]


def _parse_yaml(text: str, origin: str) -> tuple[yaml.Node | None, Any]:
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is not None:
            _refuse_duplicate_keys(root, origin)
        return root, loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{origin}:{mark.line + 1}:{mark.column + 1}" if mark else origin
        raise PlanError(f"{where}: not valid YAML: {err.problem or err.context}") from None
    except yaml.YAMLError as err:
        raise PlanError(f"{origin}: not valid YAML: {err}") from None
    finally:
        loader.dispose()


def _refuse_duplicate_keys(node: yaml.Node, origin: str) -> None:
    """YAML keeps the last of two equal keys silently; in a plan that hides a mistake."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    mark = key.start_mark
                    raise PlanError(
                        f"{origin}:{mark.line + 1}:{mark.column + 1}: "
                        f"{key.value!r} is given twice in the same mapping"
                    )
                seen.add(key.value)
            _refuse_duplicate_keys(value, origin)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _refuse_duplicate_keys(item, origin)


def _plan_error(origin: str, root: yaml.Node | None, problems: list[tuple[Loc, str]]) -> PlanError:
    located = sorted(
        ((_mark(root, loc), loc, message) for loc, message in problems),
        key=lambda p: (p[0].line, p[0].column) if p[0] else (0, 0),
    )
    lines = []
    for mark, loc, message in located:
        where = f"{origin}:{mark.line + 1}:{mark.column + 1}" if mark else origin
        field = _field_path(loc)
        lines.append(f"{where}: {field}: {message}" if field else f"{where}: {message}")
    head = f"the plan {origin} is invalid" + (f" ({len(lines)} problems)" if len(lines) > 1 else "")
    return PlanError(head + ":\n  " + "\n  ".join(lines), lines)


def _field_path(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _mark(root: yaml.Node | None, loc: Loc) -> yaml.Mark | None:
    """Where ``loc`` is in the file: the key of a field, or the nearest enclosing node."""
    node, mark = root, root.start_mark if root is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            pair = next((kv for kv in node.value if kv[0].value == part), None)
            if pair is None:
                break
            mark, node = pair[0].start_mark, pair[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
            mark = node.start_mark
        else:
            break
    return mark


def _strip_tag(loc: Loc) -> Loc:
    """Pydantic puts the kind after an asset's index (``assets, 2, sqlite, path``)."""
    if len(loc) >= 3 and loc[0] == "assets" and loc[2] in KINDS:
        return (*loc[:2], *loc[3:])
    return loc


_YAML_TYPES = {dict: "a mapping", list: "a list", str: "a string", bool: "true/false"}


def _yaml_type(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return _YAML_TYPES.get(type(value), type(value).__name__)


def _pydantic_problem(error: Any, data: Any) -> tuple[Loc, str]:
    raw: Loc = tuple(error["loc"])
    loc = _strip_tag(raw)
    kind, ctx, got = error["type"], error.get("ctx") or {}, _yaml_type(error.get("input"))
    if kind == "extra_forbidden":
        known = sorted(_fields_at(raw[:-1]))
        close = difflib.get_close_matches(str(raw[-1]), known, n=2)
        hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
        return loc, f"unknown field; {hint}expected one of: {', '.join(known)}"
    if kind == "missing":
        return loc, "required field is missing"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        kinds = ", ".join(KINDS)
        tag = ctx.get("tag")
        close = difflib.get_close_matches(str(tag), list(KINDS), n=1) if tag else []
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        what = f"unknown kind {tag!r}{hint}" if tag else "no kind given"
        return (*loc, "kind"), f"{what}: expected one of {kinds}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return loc, f"expected a mapping of fields, got {got}"
    if kind == "list_type":
        return loc, f"expected a list, got {got}"
    if kind == "string_type":
        return loc, f"expected a string, got {got}"
    if kind == "too_short":
        return loc, "must not be empty"
    if kind == "literal_error" and loc == ("version",):
        return loc, f"unsupported plan version {error.get('input')!r}: this seawall reads version 1"
    if kind == "value_error":
        return loc, str(ctx.get("error", error["msg"]))
    return loc, str(error["msg"][:1].lower() + error["msg"][1:])


def _fields_at(loc: Loc) -> list[str]:
    """The fields the model at ``loc`` (pydantic's, with kinds) accepts."""
    model: Any = Plan
    for part in loc:
        if isinstance(part, str) and part in KINDS and model is None:
            model = KINDS[part]
            continue
        if isinstance(part, int):
            continue  # the list's item type was unwrapped with the field
        field = model.model_fields.get(part) if model is not None else None
        model = _model_of(field.annotation) if field is not None else None
    return [f.alias or n for n, f in model.model_fields.items()] if model is not None else []


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The model inside ``X``, ``list[X]``, ``X | None``; None for the assets' union
    (the kind in the location says which)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _model_of(get_args(annotation)[0])
    if origin in (list, Union, types.UnionType):
        models = [m for m in map(_model_of, get_args(annotation)) if m is not None]
        return models[0] if len(models) == 1 else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _cross_check(plan: Plan) -> list[tuple[Loc, str]]:
    """What no single field can know: unique names, residency against the primary
    repository's region, two paths that would be stored under one name."""
    problems: list[tuple[Loc, str]] = []
    repos = plan.repositories
    primary_region = repos.primary.region or ""
    seen: dict[str, int] = {}
    if plan.defaults.residency and plan.defaults.residency != primary_region:
        refused = _residency_refused(plan.defaults.residency, primary_region)
        problems.append((("defaults", "residency"), f"{refused} (for every asset without its own)"))
    for i, asset in enumerate(plan.assets):
        if asset.name in seen:
            problems.append(
                (
                    ("assets", i, "name"),
                    f"{asset.name!r} is already the name of assets[{seen[asset.name]}]",
                )
            )
        seen.setdefault(asset.name, i)
        if asset.residency and asset.residency != primary_region:
            problems.append(
                (("assets", i, "residency"), _residency_refused(asset.residency, primary_region))
            )
        for field in ("paths", "files", "secret_files", "lock_files"):
            paths: list[Path] = getattr(asset, field, [])
            names: dict[str, int] = {}
            for j, path in enumerate(paths):
                if path.name in names:
                    problems.append(
                        (
                            ("assets", i, field, j),
                            f"{path} would be stored as {path.name!r}, like "
                            f"{paths[names[path.name]]}: give each a different name "
                            "or split them into two assets",
                        )
                    )
                names.setdefault(path.name, j)
        problems += _schedule_problems(plan, i, asset)
        if isinstance(asset, PostgresAsset) and asset.schemas and asset.tables:
            problems.append(
                (
                    ("assets", i, "tables"),
                    "give schemas or tables, not both (pg_dump ignores "
                    "schemas when tables are given)",
                )
            )
    specs: list[tuple[Loc, Repository]] = [(("repositories", "primary"), repos.primary)]
    specs += [(("repositories", "replicas", i), r) for i, r in enumerate(repos.replicas)]
    for where, spec in specs:
        if spec.password_env and spec.password_file:
            problems.append(
                ((*where, "password_file"), "give password_env or password_file, not both")
            )
    names_seen: set[str] = set()
    for i, replica in enumerate(repos.replicas):
        if replica.name in names_seen:
            problems.append(
                (("repositories", "replicas", i, "name"), f"{replica.name!r} is used twice")
            )
        names_seen.add(replica.name)
        if replica.location == repos.primary.location:
            problems.append(
                (
                    ("repositories", "replicas", i, "location"),
                    "is the primary repository's location",
                )
            )
    return problems


def _schedule_problems(plan: Plan, i: int, asset: AnyAsset) -> list[tuple[Loc, str]]:
    """A scheduled job the asset cannot run (checked with the defaults filled in, and
    located where the expression is written)."""
    problems: list[tuple[Loc, str]] = []
    own = (asset.schedule or Schedule()).jobs()
    default = (plan.defaults.schedule or Schedule()).jobs()
    for job, why in (
        ("forget", "needs a retention policy (retention, here or in defaults)"),
        ("copy", "needs at least one replica (repositories.replicas)"),
    ):
        if job not in own and job not in default:
            continue
        lacking = (
            not (asset.retention or plan.defaults.retention)
            if job == "forget"
            else not plan.repositories.replicas
        )
        if lacking:
            if job in own:
                problems.append((("assets", i, "schedule", job), f"a scheduled {job} {why}"))
            else:
                problems.append(
                    (
                        ("defaults", "schedule", job),
                        f"asset {asset.name!r}: a scheduled {job} {why}",
                    )
                )
    return problems


def _residency_refused(rule: str, region: str) -> str:
    has = f"region {region!r}" if region else "no region"
    return (
        f"snapshots must stay in region {rule!r}, but the primary repository has {has} "
        "(repositories.primary.region): backups would be refused"
    )


def _apply_defaults(plan: Plan) -> None:
    d = plan.defaults
    for asset in plan.assets:
        asset.rpo = asset.rpo if asset.rpo is not None else d.rpo
        asset.rto = asset.rto if asset.rto is not None else d.rto
        asset.retention = asset.retention or d.retention
        asset.residency = asset.residency or d.residency
        asset.tags = sorted({*d.tags, *asset.tags})
        if asset.schedule or d.schedule:
            jobs = (d.schedule or Schedule()).jobs() | (asset.schedule or Schedule()).jobs()
            asset.schedule = Schedule.model_validate(jobs)
