"""An uploaded architecture: stored once per tenant and content hash."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, JSONType, new_id, utcnow


class Architecture(Base):
    __tablename__ = "architectures"
    #: (tenant_id, sha256) also serves the lookups by tenant and the tenants foreign key: no
    #: index of tenant_id alone (one index page fewer written per stored architecture).
    __table_args__ = (UniqueConstraint("tenant_id", "sha256", name="uq_architectures_tenant_sha256"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    sha256: Mapped[str] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(String(16))  # json | keras | h5
    name: Mapped[str | None] = mapped_column(String(300), default=None)
    byte_size: Mapped[int] = mapped_column(BigInteger)
    config: Mapped[dict[str, Any]] = mapped_column(JSONType)
    has_weights: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Path of the uploaded file under the data directory (files only; JSON lives in `config`).
    blob_path: Mapped[str | None] = mapped_column(String(500), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
