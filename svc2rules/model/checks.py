"""API-server validation rules shared by the models (apimachinery's validation package)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from svc2rules.addresses import canonical_cidr, canonical_ip
from svc2rules.dns_names import dns1123_label_problem, dns1123_subdomain_problem
from svc2rules.errors import quote_value

_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_IANA_SVC_NAME = re.compile(r"[-a-z0-9]+")
_HAS_LETTER = re.compile(r"[a-z]")


@dataclass
class Problems:
    """Collects (field path, message) pairs for one object."""

    items: list[tuple[str, str]] = field(default_factory=list)

    def add(self, path: str, message: str) -> None:
        self.items.append((path, message))

    def invalid(self, path: str, value: object, detail: str) -> None:
        self.add(path, f"Invalid value: {quote_value(value)}: {detail}")

    def required(self, path: str) -> None:
        self.add(path, "Required value")

    def unsupported(self, path: str, value: object, supported: tuple[str, ...]) -> None:
        choices = ", ".join(f'"{s}"' for s in supported)
        self.add(path, f"Unsupported value: {quote_value(value)}: supported values: {choices}")

    def duplicate(self, path: str, value: object) -> None:
        self.add(path, f"Duplicate value: {quote_value(value)}")

    def forbidden(self, path: str, detail: str) -> None:
        self.add(path, f"Forbidden: {detail}")


def dns1123_label(problems: Problems, path: str, value: str) -> bool:
    problem = dns1123_label_problem(value)
    if problem is not None:
        problems.invalid(path, value, problem)
    return problem is None


def dns1123_subdomain(problems: Problems, path: str, value: str) -> bool:
    problem = dns1123_subdomain_problem(value)
    if problem is not None:
        problems.invalid(path, value, problem)
    return problem is None


def dns1035_label(problems: Problems, path: str, value: str) -> bool:
    if len(value) > 63:
        problems.invalid(path, value, "must be no more than 63 characters")
        return False
    if not _DNS1035_LABEL.fullmatch(value):
        problems.invalid(
            path,
            value,
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
            "start with an alphabetic character, and end with an alphanumeric character",
        )
        return False
    return True


def iana_svc_name(problems: Problems, path: str, value: str) -> bool:
    detail = None
    if len(value) > 15:
        detail = "must be no more than 15 characters"
    elif not _IANA_SVC_NAME.fullmatch(value):
        detail = "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"
    elif "--" in value:
        detail = "must not contain consecutive hyphens"
    elif not _HAS_LETTER.search(value):
        detail = "must contain at least one letter (a-z)"
    elif value.startswith("-") or value.endswith("-"):
        detail = "must not begin or end with a hyphen"
    if detail:
        problems.invalid(path, value, detail)
        return False
    return True


def port_number(problems: Problems, path: str, value: int) -> bool:
    if not 1 <= value <= 65535:
        problems.invalid(path, value, "must be between 1 and 65535, inclusive")
        return False
    return True


def ip_address(problems: Problems, path: str, value: str, family: str | None = None) -> str | None:
    """Validate an IP address; return its canonical text, or None when invalid."""
    parsed = canonical_ip(value)
    if parsed is None:
        problems.invalid(path, value, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")
        return None
    ip_fam, text = parsed
    if family is not None and ip_fam != family:
        problems.invalid(path, value, f"must be an {family} address")
        return None
    if text in ("0.0.0.0", "::"):
        problems.invalid(path, value, "may not be unspecified (0.0.0.0 or ::)")
        return None
    return text


def cidr(problems: Problems, path: str, value: str) -> str | None:
    """Validate a CIDR; return its canonical network text, or None when invalid."""
    # Space-padded values are allowed here: the field's history (an annotation once) lets them.
    network = canonical_cidr(value.strip())
    if network is None:
        problems.invalid(path, value, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)")
    return network
