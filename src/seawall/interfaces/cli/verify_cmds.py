"""``seawall verify ...``: compare what was restored with where it came from."""

from __future__ import annotations

import click

from .common import emit_json

ARTIFACTS_HELP = (
    "The artifact store of {side} when it is a backend URI (a directory or s3://BUCKET/PREFIX, "
    "the server's --artifacts-destination): needed to read mlflow-artifacts: locations."
)


@click.group("verify", short_help="Compare a restored asset with its source.")
def verify() -> None:
    """Compare a restored asset with its source, and list every difference."""


@verify.command("mlflow")
@click.argument("source")
@click.argument("restored")
@click.option("--source-artifacts", metavar="STORE", help=ARTIFACTS_HELP.format(side="SOURCE"))
@click.option("--restored-artifacts", metavar="STORE", help=ARTIFACTS_HELP.format(side="RESTORED"))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify_mlflow_cmd(
    source: str,
    restored: str,
    source_artifacts: str | None,
    restored_artifacts: str | None,
    as_json: bool,
) -> None:
    """Compare two MLflow registries: experiments, runs, params, metrics (full
    history), tags, registered models, versions, stages, aliases and artifact
    checksums. Exits 1 if anything differs.

    SOURCE and RESTORED are each a tracking server URL, a backend store URI or a
    captured manifest (registry.jsonl, or a restored MLflow asset directory).

    \b
    Example:
      seawall verify mlflow http://mlflow:5000 sqlite:////restore/mlflow.db \\
          --restored-artifacts /restore/artifacts
    """
    from seawall.operations.verify_mlflow import verify_mlflow

    result = verify_mlflow(
        source,
        restored,
        source_artifacts=source_artifacts,
        restored_artifacts=restored_artifacts,
    )
    if as_json:
        emit_json(
            {
                "ok": result.ok,
                "counts": result.counts,
                "differences": [d.to_json() for d in result.differences],
            }
        )
    else:
        for difference in result.differences:
            click.echo(str(difference))
        c = result.counts["source"]
        compared = (
            f"{c['experiments']} experiments, {c['runs']} runs, "
            f"{c['registered_models']} registered models ({c['model_versions']} versions)"
        )
        if result.ok:
            click.echo(f"no differences: {compared} compared")
        else:
            n = len(result.differences)
            click.echo(f"{n} difference{'s' if n != 1 else ''} ({compared} in the source)")
    if not result.ok:
        raise click.exceptions.Exit(1)


COMMANDS = [verify]
