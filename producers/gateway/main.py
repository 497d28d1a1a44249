"""The ASGI entry point uvicorn imports: settings and tenants from the environment."""

from __future__ import annotations

from greenq.producers.gateway.app import create_app
from greenq.producers.gateway.tenants import TenantRegistry
from greenq.shared.settings import Settings

_settings = Settings()
if _settings.gateway_tenants_file is None:
    raise SystemExit("GREENQ_GATEWAY_TENANTS_FILE is not set")
app = create_app(_settings, TenantRegistry.load(_settings.gateway_tenants_file))
