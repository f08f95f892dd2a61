"""Providers: where a stack's hosts come from and what can be done to them.

One module per provider (``lab``, ``hcloud``, ``static``), one interface
(:class:`~pgfleet.providers.base.Provider`), one factory (:func:`get`) — the
only place outside spec validation that looks at ``spec.provider``.
"""

from __future__ import annotations

from pathlib import Path

from pgfleet.providers.base import Provider
from pgfleet.spec import Spec


def provider_class(spec: Spec) -> type[Provider]:
    """The class of the validated ``spec``'s provider (its attributes answer questions without a stack)."""
    if spec.provider == "lab":
        from pgfleet.providers.lab import LabProvider

        return LabProvider
    if spec.provider == "hcloud":
        from pgfleet.providers.hcloud import HcloudProvider

        return HcloudProvider
    if spec.provider == "static":
        from pgfleet.providers.static import StaticProvider

        return StaticProvider
    raise ValueError(f"unknown provider {spec.provider!r}")  # spec validation admits only the three above


def get(stack: str, spec: Spec, file: Path | None = None) -> Provider:
    """The provider of ``stack`` (its name: Pulumi stack, state directory) with the validated ``spec`` (from ``file``)."""
    return provider_class(spec)(stack, spec, file)


__all__ = ["Provider", "get", "provider_class"]
