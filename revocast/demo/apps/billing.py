"""``billing``: a FastAPI service using the verifying dependency (no middleware)."""

from typing import Annotated, Any

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse

from consumer_sdk.integrations.fastapi import RevocastBearer
from revocast.demo.apps._sdk import health, revocast, whoami

app = FastAPI(title="billing")
bearer = RevocastBearer(revocast)


@app.get("/whoami")
def whoami_endpoint(claims: Annotated[dict[str, Any], Depends(bearer)]) -> dict[str, Any]:
    return whoami(claims, "fastapi")


@app.get("/healthz")
def healthz() -> JSONResponse:
    code, body = health()
    return JSONResponse(body, status_code=code)
