"""Where an open service (no API keys) may listen: loopback only, unless told otherwise."""

from __future__ import annotations

import ipaddress
import logging

from service.errors import ConfigurationError

__all__ = ["check_bind", "is_loopback"]

log = logging.getLogger("service.security")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(hosts: list[str], keys_configured: bool, insecure_bind: bool) -> None:
    """With no API keys, refuse to listen beyond loopback unless explicitly told to."""
    exposed = [h for h in hosts if not is_loopback(h)]
    if exposed and not keys_configured and not insecure_bind:
        raise ConfigurationError(
            f"no API keys are configured, so the service is open to anyone who reaches it: refusing to bind "
            f"{', '.join(exposed)}. Configure keys (SESSIONS_API_KEYS_FILE, `sessions keys create`), bind "
            "127.0.0.1, or pass --insecure-bind (SESSIONS_INSECURE_BIND=1)",
            code="insecure_bind",
        )
