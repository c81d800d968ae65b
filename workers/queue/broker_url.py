"""The broker's URL: the default, and how it is shown (any password masked). Light: the CLI reads it at start-up."""

from __future__ import annotations

DEFAULT_BROKER_URL = "redis://localhost:6379/0"


def shown(broker_url: str) -> str:
    """The broker URL with any password masked."""
    from kombu.utils.url import maybe_sanitize_url  # kombu (0.1 s) loads only when a URL is shown

    return maybe_sanitize_url(broker_url)
