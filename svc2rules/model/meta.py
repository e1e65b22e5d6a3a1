"""Object metadata and the base class of every Kubernetes model."""

from __future__ import annotations

from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, ModelWrapValidatorHandler, PrivateAttr, model_validator

from svc2rules.load.parse import DEFAULT_NAMESPACE, object_ref
from svc2rules.model.checks import Problems, dns1123_label
from svc2rules.model.legacy import LegacyValue

__all__ = ["DEFAULT_NAMESPACE", "KubeModel", "KubeObject", "ObjectMeta", "object_ref"]


class KubeModel(BaseModel):
    """Strict like the API server's decoder (no "80" for an int); unknown fields ignored."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True, populate_by_name=True)


class ObjectMeta(KubeModel):
    name: str | None = None
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class KubeObject(KubeModel):
    """A top-level object: what every supported kind has in common."""

    KIND: ClassVar[str]
    API_VERSION: ClassVar[str]

    api_version: str = Field(alias="apiVersion")
    kind: str
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)

    @property
    def namespace(self) -> str:
        return self.metadata.namespace or DEFAULT_NAMESPACE

    @property
    def name(self) -> str:
        return self.metadata.name or ""

    @property
    def legacy_values(self) -> tuple[LegacyValue, ...]:
        """The values read the legacy way (model.legacy), in canonical form in this model."""
        return ()

    @classmethod
    def check_metadata(cls, metadata: ObjectMeta, problems: Problems) -> None:
        """Name rules; a classmethod so they can run even when the rest fails to parse."""
        if not metadata.name:
            problems.required("metadata.name")
        if metadata.namespace is not None:
            dns1123_label(problems, "metadata.namespace", metadata.namespace)

    def check(self) -> Problems:
        """Semantic validation beyond types, as the API server would do it."""
        problems = Problems()
        self.check_metadata(self.metadata, problems)
        return problems


class CanonicalObject(KubeObject):
    """A kind that can carry legacy addresses (model.legacy): built through one validator, so
    every path that builds one (validation, the compile memo) holds the canonical values, and
    keeps what it rewrote for the warning."""

    _legacy: tuple[LegacyValue, ...] = PrivateAttr(default=())

    @model_validator(mode="wrap")
    @classmethod
    def _read_legacy(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        return handler(data)._canonical()

    @property
    def legacy_values(self) -> tuple[LegacyValue, ...]:
        return self._legacy

    def _canonical(self) -> Self:
        """This object with its legacy values in canonical form (itself when it has none)."""
        return self
