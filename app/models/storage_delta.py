"""Changes to a tenant's stored bytes not yet folded into ``tenants.stored_bytes``."""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Integer
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class StorageDelta(Base):
    """One architecture's bytes added (positive) or deleted (negative).

    Written in the transaction that adds or deletes the architecture as a plain insert, so
    concurrent requests of one tenant never wait on each other's counter row; the reconciler
    folds them into the tenant's counter.
    """

    __tablename__ = "storage_deltas"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    delta: Mapped[int] = mapped_column(BigInteger)
