"""The primary model server of the example: the neural network behind HTTP.

    python -m examples.degrade_service.primary --weights primary.npz --port 8101

It runs as a process of its own, as a model server would, so that the example
(and its test) can kill it and start it again.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel, Field

from examples.degrade_service.model import FEATURES, PrimaryModel


class Features(BaseModel):
    features: list[float] = Field(min_length=FEATURES, max_length=FEATURES)


def create_primary_app(weights: Path) -> FastAPI:
    model = PrimaryModel(weights)
    app = FastAPI(title="primary fraud model")

    @app.post("/predict")
    def predict(body: Features) -> dict[str, float]:
        return {"score": model.score(body.features)}

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def spawn(weights: Path, port: int, log: Path, *, timeout: float = 60) -> subprocess.Popen[bytes]:
    """Start this server as a process of its own on loopback; return once it answers."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", __name__, "--weights", str(weights), "--port", str(port)],
            cwd=Path(__file__).resolve().parents[2],  # where ``examples`` is importable
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    process.wait()
    raise RuntimeError(f"the primary model server did not start: {log.read_text()[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8101)
    args = parser.parse_args()
    app = create_primary_app(args.weights)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
