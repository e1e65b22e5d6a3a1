"""Domain names we print: built only from validated labels, and checked again before printing.

Every label comes from a validated Kubernetes field (DNS-1035/1123 labels, IANA port names) or
from an IP address, so nothing from a manifest can add a record, a `$` directive or a comment.
The checks here are the second lock on that door, and also catch what the API server lets
through but DNS cannot hold (a label over 63 octets in an ExternalName, a name over 253).
"""

from __future__ import annotations

import ipaddress
import re

from svc2rules.errors import BackendError, quote_value

MAX_NAME = 253
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_SERVICE_LABEL = re.compile(r"_[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?")


def is_hostname(name: str) -> bool:
    """A dot-separated name of LDH labels (no trailing dot), as BIND's check-names wants it."""
    return 0 < len(name) <= MAX_NAME and all(_LABEL.fullmatch(label) for label in name.split("."))


def check_domain(domain: str) -> str:
    """The cluster domain, lower-cased and without its trailing dot, or UsageError-worthy text."""
    normalized = domain.strip().lower().removesuffix(".")
    if not is_hostname(normalized):
        raise ValueError(
            f"invalid cluster domain {quote_value(domain)}: expected dot-separated labels of a-z, 0-9 and '-'"
        )
    return normalized


def label(text: str) -> str:
    """One label, refused (as a bug: validation should have stopped it) unless it is LDH."""
    if not _LABEL.fullmatch(text):
        raise BackendError(f"refusing to print {text!r} as a DNS label")
    return text


def service_label(port_name: str, protocol: str) -> str:
    """`_<port>._<proto>` of an SRV owner name."""
    out = f"_{label(port_name)}._{label(protocol.lower())}"
    if not all(_SERVICE_LABEL.fullmatch(part) for part in out.split(".")):
        raise BackendError(f"refusing to print {out!r} as an SRV service label")
    return out


def address_label(ip: str) -> str:
    """The hostname of an endpoint that has none: its address with '-' for '.' and ':'.

    CoreDNS's choice (10-180-0-1, fd00--1); a compressed IPv6 address that would begin or end
    with '-' (::1, fd00::) is written out in full instead, so the label stays a valid hostname.
    """
    parsed = ipaddress.ip_address(ip)
    text = str(parsed).replace(".", "-").replace(":", "-")
    if text.startswith("-") or text.endswith("-"):
        text = parsed.exploded.replace(":", "-")
    return label(text)


def record_type(ip: str) -> str:
    return "AAAA" if ":" in ip else "A"
