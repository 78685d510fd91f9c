"""The framework's floor: ``POST /v1/analyses`` that does no analysis, for ``bench_wrk --floor``.

The same server stack as ``convlens serve`` (uvicorn with uvloop and httptools, FastAPI, one
process per core, no access log) and the same request (the wrk driver's Example 3 bodies); the
route reads the body, parses it with orjson and answers 201 with a small JSON object. What it
serves per second on a machine bounds what any route on this stack can serve there: the
distance between the two is the cost of the application itself.
"""

from __future__ import annotations

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

app = FastAPI()


@app.post("/v1/analyses", status_code=201)
async def create(request: Request) -> Response:
    document = orjson.loads(await request.body())
    name = document["architecture"]["config"]["name"]
    return Response(orjson.dumps({"status": "succeeded", "name": name}), status_code=201,
                    media_type="application/json")
