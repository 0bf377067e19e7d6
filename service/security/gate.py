"""The gate every request passes before its handler: the key, the tenant, the rate, then the operation's
policy (``service.operations``: its role, acting as an admin, its input checks). One per server; both
adapters call ``Gate.enter``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from service.errors import PermissionDenied
from service.operations import Operation
from service.request import acts_as_admin
from service.security.keys import KeyStore, Principal, parse_keys_env
from service.security.ratelimit import RateLimit, RateLimiter
from service.settings import ServiceSettings
from service.validation import check_tenant

__all__ = ["Gate"]

log = logging.getLogger("service.security")


class Gate:
    """Everything a request passes before its handler: the key, the tenant, the rate. One per server."""

    def __init__(
        self, store: KeyStore, default_tenant: str = "default", rate_limit: RateLimit | None = None
    ) -> None:
        self.store = store
        self.default_tenant = default_tenant
        self.limiter = RateLimiter(rate_limit) if rate_limit is not None else None

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> Gate:
        """From ``api_keys_file``, ``api_keys``, ``rate_limit`` and ``default_tenant``."""
        path = settings.api_keys_file
        store = KeyStore(Path(path) if path else None, parse_keys_env(settings.api_keys))
        return cls(store, settings.default_tenant, settings.rate_limit)

    @property
    def open(self) -> bool:
        return not self.store.configured

    def admit(self, authorization: str | None, tenant_asked: str | None, client: str | None) -> Principal:
        """Authenticate, fix the tenant, spend a token. Open service: an admin of the tenant asked for."""
        if tenant_asked:
            check_tenant(tenant_asked)
        if self.open:
            principal = Principal(None, tenant_asked or self.default_tenant, "admin")
        else:
            principal = self.store.authenticate(authorization)
            if tenant_asked and tenant_asked != principal.tenant:
                raise PermissionDenied(
                    "X-Tenant-Id names another tenant than the key's", code="tenant_mismatch"
                )
        if self.limiter is not None:
            self.limiter.take(principal.key_id or f"client:{client or '?'}")
        return principal

    def enter(
        self,
        op: Operation,
        inputs: Mapping[str, Any],
        *,
        authorization: str | None,
        tenant_asked: str | None,
        client: str | None,
        actor: str | None,
    ) -> Principal | None:
        """Admit a call of ``op`` (None for a public operation): the key, tenant and rate (``admit``), the
        role the operation needs with these ``inputs``, the admin role to act as an admin, then the input
        checks, so a refused call never reaches its handler."""
        role = op.role_for(inputs)
        if role is None:
            return None
        principal = self.admit(authorization, tenant_asked, client)
        principal.require(role, op.name)
        if acts_as_admin(actor):
            principal.require("admin", "acting as an admin (x-actor admin:...)")
        op.check(inputs)
        return principal
