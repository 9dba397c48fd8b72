"""The inference service of the example: fraud scores that keep coming during an outage.

Each request goes through a fallback chain: the primary model server (over
HTTP), then the prediction cache (filled from the primary's answers), then a
small in-process model (the newest version that passed a seawall drill), then
a safe default that sends the transaction to manual review::

    SEAWALL_PASSWORD=... python -m examples.degrade_service.app \\
        --primary-url http://127.0.0.1:8101 --cache /var/lib/fraud/cache.sqlite \\
        --repo /backups/repo --asset fraud-small --model-path /models/fraud/small.npz

``POST /predict`` answers with the step that produced the score; ``GET /health``
shows the breakers; ``GET /metrics`` is for Prometheus.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from pydantic import BaseModel, Field

from examples.degrade_service.model import FEATURES, SmallModel
from seawall.degrade import (
    CircuitBreaker,
    DegradeMetrics,
    FallbackChain,
    PredictionCache,
    Step,
    load_drilled_model,
)
from seawall.repository.repo import Repository
from seawall.storage import open_storage

#: When no model can answer, a person looks at the transaction.
SAFE_DEFAULT: dict[str, Any] = {"score": None, "decision": "review"}


class Transaction(BaseModel):
    features: list[float] = Field(min_length=FEATURES, max_length=FEATURES)


class Prediction(BaseModel):
    score: float | None
    decision: str
    #: the chain step that answered, and whether that is not the primary
    step: str
    degraded: bool


def decide(score: float) -> dict[str, Any]:
    return {"score": score, "decision": "decline" if score >= 0.5 else "approve"}


def fraud_chain(
    client: httpx.AsyncClient,
    small: SmallModel,
    cache: PredictionCache,
    *,
    metrics: DegradeMetrics,
    primary_timeout: float = 0.5,
    cooldown: float = 5.0,
) -> FallbackChain[list[float], dict[str, Any]]:
    """The chain: the primary model server at ``client``'s base URL, the cache, the small
    model, the safe default."""

    async def primary(features: list[float]) -> dict[str, Any]:
        response = await client.post("/predict", json={"features": features})
        response.raise_for_status()
        return decide(float(response.json()["score"]))

    return FallbackChain(
        [
            Step(
                "primary",
                primary,
                timeout=primary_timeout,
                breaker=CircuitBreaker(slow_seconds=primary_timeout / 2, cooldown=cooldown),
            ),
            cache.step(),
            Step("small", lambda features: decide(small.score(features)), timeout=0.1),
            Step("default", lambda _features: SAFE_DEFAULT, timeout=None, breaker=None),
        ],
        name="fraud",
        metrics=metrics,
    )


def create_app(
    primary_url: str,
    small: SmallModel,
    cache: PredictionCache,
    *,
    registry: CollectorRegistry | None = None,
    primary_timeout: float = 0.5,
    cooldown: float = 5.0,
) -> FastAPI:
    """The service; the caller owns ``cache`` (and closes it)."""
    client = httpx.AsyncClient(base_url=primary_url, timeout=primary_timeout)
    chain = fraud_chain(
        client,
        small,
        cache,
        metrics=DegradeMetrics.for_registry(registry),
        primary_timeout=primary_timeout,
        cooldown=cooldown,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await client.aclose()
        chain.close()

    app = FastAPI(title="fraud scoring, degrading gracefully", lifespan=lifespan)

    @app.post("/predict")
    async def predict(body: Transaction) -> Prediction:
        answer = await chain.apredict(body.features)
        return Prediction(**answer.value, step=answer.step, degraded=answer.degraded)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry or REGISTRY), media_type=CONTENT_TYPE_LATEST)

    @app.get("/health")
    def health() -> dict[str, dict[str, str]]:
        return {"breakers": {s.name: s.breaker.state for s in chain.steps if s.breaker}}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--primary-url", default="http://127.0.0.1:8101")
    parser.add_argument("--cache", type=Path, required=True, help="the prediction cache file")
    parser.add_argument("--repo", required=True, help="the seawall repository (SEAWALL_PASSWORD)")
    parser.add_argument("--asset", required=True, help="the small model's asset in the drills")
    parser.add_argument("--model-path", required=True, help="its file, as the snapshot stores it")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args()
    repo = Repository.open(open_storage(args.repo), os.environ["SEAWALL_PASSWORD"])
    with tempfile.TemporaryDirectory() as models:  # the weights are read into memory
        small = load_drilled_model(repo, args.asset, args.model_path, models, SmallModel).model
    with PredictionCache(args.cache) as cache:
        app = create_app(args.primary_url, small, cache)
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
