"""Typed OAuth failures with a stable ``code`` (shown to the page as ``#oauth_error=code``)."""

from __future__ import annotations


class OAuthError(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


class ProviderError(OAuthError):
    """The provider refused or failed a request (``error`` of its answer in ``provider_code``)."""

    def __init__(self, provider_code: str, message: str, status: int = 502) -> None:
        super().__init__("provider_error", message, status)
        self.provider_code = provider_code


class NotConnected(OAuthError):
    def __init__(self, provider: str) -> None:
        super().__init__("not_connected", f"no {provider} account is connected", 404)


class ReconnectRequired(OAuthError):
    """The stored grant no longer works (expired without refresh, or revoked)."""

    def __init__(self, provider: str) -> None:
        super().__init__(
            "reconnect_required", f"the {provider} connection expired: connect it again", 409
        )
