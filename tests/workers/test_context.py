"""Per-process worker resources: the render engine and its fallback."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from gimletd.rendering import RenderEngine
from workers import context


@pytest.fixture(autouse=True)
def _fresh_engine() -> Iterator[None]:
    context.render_engine.cache_clear()
    yield
    context.render_engine.cache_clear()


def test_helm_is_used_where_its_engine_is_installed() -> None:
    assert context.render_engine() is RenderEngine.HELM


def test_flux_is_the_fallback_where_helm_cannot_be_installed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The Helm wheel ships for x86-64 Linux and macOS only; elsewhere Flux renders charts."""
    monkeypatch.setattr(context, "helm_available", lambda: False)
    with caplog.at_level(logging.WARNING, logger="workers.context"):
        assert context.render_engine() is RenderEngine.FLUX
    assert "Flux HelmReleases instead" in caplog.text
