"""The OpenAPI contract as generated clients need it: clean operation ids and one request body
type per operation.

Client generators (openapi-python-client, openapi-generator) name methods after operation
ids and cannot express an operation that takes either JSON or a multipart upload. So:

- every operation id is its route's name (``create_analysis``, ``get_analysis``,
  ``upload_analysis``, ``create_run``, ...) instead of FastAPI's
  ``create_analysis_v1_analyses_post``;
- an upload has its own operation (``POST /v1/analyses/upload``,
  ``POST /v1/training-runs/upload``) documented with the multipart body, while the JSON
  operation documents JSON only. The JSON routes still accept multipart bodies, as before.

Documents the service returns as stored (the report, a training run's result) are typed in
the document by :func:`documented_as`: the response field stays the stored dict at run time
(no validation on the hot path, the bytes as stored) while the schema names the model, whose
definitions :func:`add_documented_models` puts in ``components``.

Example::

    app = FastAPI(generate_unique_id_function=operation_id)
    report: Annotated[dict[str, Any] | None, documented_as(Report, nullable=True)] = None
    one_body_type_per_operation(schema)    # in the app's openapi() hook
"""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute
from pydantic import BaseModel, WithJsonSchema
from pydantic.json_schema import models_json_schema

JSON = "application/json"
MULTIPART = "multipart/form-data"


def operation_id(route: APIRoute) -> str:
    """The route's name (its function's name unless given), as the operation id.

    >>> from fastapi import APIRouter
    >>> router = APIRouter()
    >>> @router.get("/v1/analyses/{analysis_id}")
    ... def get_analysis(analysis_id: str) -> None: ...
    >>> operation_id(router.routes[0])
    'get_analysis'
    """
    return route.name


def one_body_type_per_operation(schema: dict[str, Any]) -> None:
    """Each operation documents one request body type: an operation offering JSON and
    multipart keeps JSON, and its multipart body moves to its upload twin (the same path with
    ``/upload``) when that operation exists and documents none of its own."""
    paths = schema.get("paths", {})
    for path, operations in paths.items():
        for method, operation in operations.items():
            content = (operation.get("requestBody") or {}).get("content") if isinstance(operation, dict) else None
            if not content or JSON not in content or MULTIPART not in content:
                continue
            multipart = content.pop(MULTIPART)
            twin = paths.get(path.rstrip("/") + "/upload", {}).get(method)
            if twin is not None and "requestBody" not in twin:
                twin["requestBody"] = {"required": True, "content": {MULTIPART: multipart}}


#: The models :func:`documented_as` refers to, added to the document's components.
DOCUMENTED_MODELS: dict[str, type[BaseModel]] = {}


def documented_as(model: type[BaseModel], *, nullable: bool = False, description: str = "") -> WithJsonSchema:
    """A field's JSON schema: a reference to ``model`` (optionally null), whatever its run-time type."""
    DOCUMENTED_MODELS[model.__name__] = model
    reference: dict[str, Any] = {"$ref": f"#/components/schemas/{model.__name__}"}
    schema: dict[str, Any] = {"anyOf": [reference, {"type": "null"}]} if nullable else dict(reference)
    if description:
        schema["description"] = description
    return WithJsonSchema(schema)


def add_documented_models(schema: dict[str, Any]) -> None:
    """Put every :data:`DOCUMENTED_MODELS` model, and the models it uses, in ``components``
    (as the service serialises them: field aliases such as ``global``)."""
    if not DOCUMENTED_MODELS:
        return
    _, definitions = models_json_schema(
        [(model, "serialization") for model in DOCUMENTED_MODELS.values()],
        ref_template="#/components/schemas/{model}",
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, definition in definitions.get("$defs", {}).items():
        existing = components.get(name)
        if existing is not None and existing != definition:
            raise ValueError(f"two different schemas named {name} in the OpenAPI document")
        components[name] = definition
