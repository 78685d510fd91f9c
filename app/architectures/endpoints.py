"""Uploaded architectures (deduplicated by content): one service call per route."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from app.api.deps import ScopeDep, SettingsDep, TenantDep
from app.api.responses import EncodedJSON
from app.architectures import service
from app.architectures.schemas import ArchitectureOut, ArchitecturePage

router = APIRouter(prefix="/v1/architectures", tags=["architectures"])


@router.get("", response_model=ArchitecturePage, summary="List architectures")
async def list_architectures(
    scope: ScopeDep,
    tenant_id: TenantDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Response:
    return EncodedJSON(await scope.run(service.page, tenant_id, limit, offset))


@router.get("/{architecture_id}", response_model=ArchitectureOut, summary="Get an architecture")
async def get_architecture(architecture_id: str, scope: ScopeDep, tenant_id: TenantDep) -> Response:
    return EncodedJSON(await scope.run(service.read, tenant_id, architecture_id))


@router.delete("/{architecture_id}", status_code=204, summary="Delete an architecture and its analyses")
async def delete_architecture(architecture_id: str, scope: ScopeDep, tenant_id: TenantDep,
                              settings: SettingsDep) -> Response:
    await scope.run(service.delete, settings, tenant_id, architecture_id)
    return Response(status_code=204)
