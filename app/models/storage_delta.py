"""Changes to a tenant's stored bytes not yet folded into ``tenants.stored_bytes``."""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Index, Integer
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class StorageDelta(Base):
    """One architecture's bytes added (positive) or deleted (negative).

    Written in the transaction that adds or deletes the architecture as a plain insert, so
    concurrent requests of one tenant never wait on each other's counter row; the reconciler
    folds them into the tenant's counter.
    """

    __tablename__ = "storage_deltas"
    #: The quota check sums a tenant's pending deltas: with ``delta`` in the index it reads
    #: the index alone.
    __table_args__ = (Index("ix_storage_deltas_tenant_delta", "tenant_id", "delta"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    delta: Mapped[int] = mapped_column(BigInteger)
