"""A FastAPI model server for the gateway's tests, run by a real uvicorn
(``python -m uvicorn fastapi_model:app``): it predicts the sum of each instance and
counts what it was asked, so a test can say every request reached it once."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

app = FastAPI()
_seen: list[str] = []


@app.post("/predict")
async def predict(payload: dict[str, Any]) -> dict[str, Any]:
    instances = payload.get("instances", [])
    _seen.append("predict")
    return {"predictions": [sum(row) for row in instances]}


@app.get("/seen")
async def seen() -> dict[str, int]:
    return {"requests": len(_seen)}
