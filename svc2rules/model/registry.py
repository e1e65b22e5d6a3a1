"""Turn raw objects into validated models, collecting every problem of a run."""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from svc2rules.errors import Diagnostic, quote_value
from svc2rules.load.parse import OversizedInt, RawObject, format_path
from svc2rules.model.checks import Problems
from svc2rules.model.endpoints import Endpoints
from svc2rules.model.endpointslice import EndpointSlice, EndpointSliceV1Beta1
from svc2rules.model.legacy import legacy_message
from svc2rules.model.meta import DEFAULT_NAMESPACE, KubeObject, ObjectMeta, object_ref
from svc2rules.model.node import Node
from svc2rules.model.pod import Pod
from svc2rules.model.service import Service
from svc2rules.model.servicecidr import ServiceCIDR, ServiceCIDRV1Beta1

SUPPORTED: dict[tuple[str, str], type[KubeObject]] = {
    (model.API_VERSION, model.KIND): model
    for model in (
        Service,
        Endpoints,
        EndpointSlice,
        EndpointSliceV1Beta1,
        Pod,
        Node,
        ServiceCIDR,
        ServiceCIDRV1Beta1,
    )
}

_TYPE_MESSAGES = {
    "int_type": "must be an integer",
    "string_type": "must be a string",
    "bool_type": "must be a boolean",
    "list_type": "must be a list",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
}


@dataclass
class ValidatedObjects:
    """The objects of a run, in input order, plus what was wrong or skipped."""

    objects: list[tuple[str, KubeObject]] = field(default_factory=list)  # (source, object)
    errors: list[Diagnostic] = field(default_factory=list)
    warnings: list[Diagnostic] = field(default_factory=list)
    # Every valid object as (input index, model, (kind, namespace, name)); the model is None
    # for an object taken as valid without parsing it (`trusted`).
    accepted: list[tuple[int, KubeObject | None, tuple[str, str, str]]] = field(default_factory=list)


def validate_objects(raw_objects: Iterable[RawObject], trusted: Container[int] = ()) -> ValidatedObjects:
    """Validate every object, reporting every problem of the run.

    Objects whose index is in `trusted` are known to be valid (validation is deterministic:
    the same data validated before): they are not parsed again, only checked for duplicates.
    """
    result = ValidatedObjects()
    seen: dict[tuple[str, str, str], str] = {}
    for index, raw in enumerate(raw_objects):
        data = raw.data
        kind = data.get("kind")
        api_version = data.get("apiVersion")
        model = (
            SUPPORTED.get((api_version, kind))
            if isinstance(kind, str) and isinstance(api_version, str)
            else None
        )
        if model is None:
            ref = object_ref(data)
            if not isinstance(kind, str) or not kind:
                result.errors.append(Diagnostic(raw.source, "Required value", "Object", ref, "kind"))
            elif not isinstance(api_version, str) or not api_version:
                result.errors.append(Diagnostic(raw.source, "Required value", kind, ref, "apiVersion"))
            else:
                result.warnings.append(
                    Diagnostic(
                        raw.source, f"skipped: svc2rules does not read {api_version} {kind}", kind, ref
                    )
                )
            continue
        obj: KubeObject | None = None
        if index in trusted:
            meta = data["metadata"]
            key = (model.KIND, meta.get("namespace") or DEFAULT_NAMESPACE, meta["name"])
        else:
            obj = _validated(raw, model, result.errors)
            if obj is None:
                continue
            key = (model.KIND, obj.namespace, obj.name)
            if obj.legacy_values:
                fields, message = legacy_message(obj.legacy_values)
                result.warnings.append(Diagnostic(raw.source, message, model.KIND, object_ref(data), fields))
        if key in seen:
            result.errors.append(
                Diagnostic(
                    raw.source,
                    f"Duplicate value: object already defined in {seen[key]}",
                    model.KIND,
                    object_ref(data),
                    "metadata.name",
                )
            )
            continue
        seen[key] = raw.source
        result.accepted.append((index, obj, key))
        if obj is not None:
            result.objects.append((raw.source, obj))
    return result


def _validated(raw: RawObject, model: type[KubeObject], errors: list[Diagnostic]) -> KubeObject | None:
    """The parsed object, or None after adding its problems to `errors`."""
    data = raw.data
    try:
        obj = model.model_validate(data)
    except ValidationError as exc:
        ref = object_ref(data)
        type_errors = [
            _diagnostic_from_pydantic(raw.source, model.KIND, ref, error) for error in exc.errors()
        ]
        errors.extend(type_errors)
        errors.extend(_other_problems(raw.source, model, ref, data, type_errors))
        return None
    problems = obj.check()
    if problems.items:
        ref = object_ref(data)
        errors.extend(Diagnostic(raw.source, msg, model.KIND, ref, path) for path, msg in problems.items)
        return None
    return obj


def _other_problems(
    source: str, model: type[KubeObject], ref: str, data: dict[str, Any], type_errors: list[Diagnostic]
) -> list[Diagnostic]:
    """Semantic problems of an object that failed strict parsing, so one run reports all.

    A lax parse (which accepts "80" for 80) usually succeeds and lets the API-server
    rules run; problems at a field that already has a type error are not repeated.
    """
    problems = Problems()
    try:
        problems = model.model_validate(data, strict=False).check()
    except ValidationError:
        try:
            model.check_metadata(ObjectMeta.model_validate(data.get("metadata") or {}), problems)
        except ValidationError:
            return []
    seen = {d.field for d in type_errors}
    return [
        Diagnostic(source, msg, model.KIND, ref, path) for path, msg in problems.items if path not in seen
    ]


def _diagnostic_from_pydantic(source: str, kind: str, ref: str, error: ErrorDetails) -> Diagnostic:
    path = format_path(error["loc"])
    kind_of_error = error["type"]
    if kind_of_error == "missing":
        message = "Required value"
    elif isinstance(error.get("input"), OversizedInt):
        # Go's decoder fails the same way: "cannot unmarshal number ... of type int32".
        message = f"Invalid value: {error.get('input')!r}: out of range"
    else:
        detail = _TYPE_MESSAGES.get(kind_of_error)
        if detail is None:
            detail = str(error["msg"]).removeprefix("Value error, ")
        message = f"Invalid value: {quote_value(error.get('input'))}: {detail}"
    return Diagnostic(source, message, kind, ref, path)
