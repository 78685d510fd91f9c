from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from app.api.deps import SessionDep, TenantDep
from app.architectures import repository, service
from app.architectures.schemas import ArchitectureOut, ArchitecturePage

router = APIRouter(prefix="/v1/architectures", tags=["architectures"])


def to_out(row, with_config: bool = False) -> ArchitectureOut:  # type: ignore[no-untyped-def]
    return ArchitectureOut(
        id=row.id, name=row.name, format=row.format, sha256=row.sha256, byte_size=row.byte_size,
        has_weights=row.has_weights, created_at=row.created_at,
        config=row.config if with_config else None,
    )


@router.get("", response_model=ArchitecturePage, summary="List architectures")
def list_architectures(
    session: SessionDep,
    tenant_id: TenantDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> ArchitecturePage:
    rows, total = repository.page(session, tenant_id, limit, offset)
    return ArchitecturePage(items=[to_out(r) for r in rows], total=total, limit=limit, offset=offset)


@router.get("/{architecture_id}", response_model=ArchitectureOut, summary="Get an architecture")
def get_architecture(architecture_id: str, session: SessionDep, tenant_id: TenantDep) -> ArchitectureOut:
    return to_out(service.get(session, tenant_id, architecture_id), with_config=True)


@router.delete("/{architecture_id}", status_code=204, summary="Delete an architecture and its analyses")
def delete_architecture(architecture_id: str, session: SessionDep, tenant_id: TenantDep) -> Response:
    service.delete(session, tenant_id, architecture_id)
    return Response(status_code=204)
