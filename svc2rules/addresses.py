"""IP address helpers: fast ones (the C parser behind socket.inet_pton, not ipaddress), and
strict forms of ipaddress's parsers that refuse what Kubernetes' Go parsers refuse.

Resolving 100,000 endpoints calls the fast ones hundreds of thousands of times; ipaddress
costs ~30 us per parse, inet_pton well under 1 us.
"""

from __future__ import annotations

import ipaddress
import re
import socket

from svc2rules.family import IPFamily

IPV4 = IPFamily.IPv4
IPV6 = IPFamily.IPv6


def canonical_ip(text: str) -> tuple[IPFamily, str] | None:
    """(family, canonical text) of a strictly written address, or None if invalid.

    inet_pton rejects leading zeros, surrounding spaces and partial forms, as the
    API server's strict IP validation does.
    """
    if ":" in text:
        try:
            return IPV6, socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, text))
        except (OSError, ValueError):
            return None
    try:
        socket.inet_pton(socket.AF_INET, text)
    except (OSError, ValueError):
        return None
    return IPV4, text


def family(text: str) -> IPFamily:
    """Family of an already-validated address or CIDR."""
    return IPV6 if ":" in text else IPV4


def ip_sort_key(text: str) -> bytes:
    """Numeric order, IPv4 before IPv6, for already-validated addresses."""
    if ":" in text:
        return b"\x06" + socket.inet_pton(socket.AF_INET6, text)
    return b"\x04" + socket.inet_pton(socket.AF_INET, text)


# -- addresses and CIDRs as Kubernetes parses them ------------------------------------------------
#
# The API server and kube-proxy parse with Go's net package (k8s.io/utils/net): no IPv6 zone
# ("fe80::1%eth0"), a decimal prefix length. Python's ipaddress accepts both a zone (anything
# after "%", up to "/": quotes and newlines included) and a netmask ("10.0.0.0/255.0.0.0"); these
# refuse what Go refuses and otherwise give what ipaddress gives, so a valid value keeps its form.

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_MAX_PREFIX_DIGITS = 3  # significant digits of a prefix length (at most 128)


def strict_ip(text: str) -> IPAddress:
    """ipaddress.ip_address(text), refusing a zone: raises ValueError for what Go refuses."""
    if "%" in text:
        raise ValueError(f"{text!r}: an address with a zone (scope id)")
    return ipaddress.ip_address(text)


def strict_network(text: str) -> IPNetwork:
    """ipaddress.ip_network(text, strict=False) (host bits allowed, as net.ParseCIDR), refusing a
    zone, a netmask and anything but ADDRESS/DECIMAL-PREFIX: raises ValueError as Go would."""
    address, slash, prefix = text.partition("/")
    if "%" in address:
        raise ValueError(f"{text!r}: a CIDR with a zone (scope id)")
    if not slash or not (prefix.isascii() and prefix.isdigit()):
        raise ValueError(f"{text!r}: not ADDRESS/PREFIX-LENGTH")
    if len(prefix.lstrip("0")) > _MAX_PREFIX_DIGITS:
        raise ValueError(f"{text!r}: prefix length out of range")
    return ipaddress.ip_network(text, strict=False)


def canonical_cidr(text: str) -> str | None:
    """The network a CIDR names (ipaddress's text), or None if Go's parser refuses it."""
    try:
        return str(strict_network(text))
    except ValueError:
        return None


# -- legacy values: leading zeros, read as kube-proxy reads them -----------------------------------
#
# Go before 1.17 (and so the API server, until strict IP validation) accepted "010.0.0.1" and read
# every part as DECIMAL (10.0.0.1, never octal 8.0.0.1); objects stored then are still served.
# kube-proxy reads them with k8s.io/utils/net ParseIPSloppy / ParseCIDRSloppy (net/parse.go): when
# Go's strict parser refuses a value, strip the leading zeros of a dotted quad (at the start or
# after a ":") and of its prefix length, and parse again. This is its matchZeros pattern and its
# stripZeros replacement, anchored at the very end (Go's `$`, not Python's, which also matches
# before a final newline).
_LEGACY_ZEROS = re.compile(
    r"(^|:)0*(0|[1-9][0-9]*)\.0*(0|[1-9][0-9]*)\.0*(0|[1-9][0-9]*)\.0*(0|[1-9][0-9]*)"
    r"((/)0*(0|[1-9][0-9]*))?\Z"
)
_STRIP_ZEROS = r"\1\2.\3.\4.\5\7\8"
# A cheap necessary condition of a legacy value: some part starts with a zero and has more digits
# (the text searched starts with a space). Spelt to start with a literal, which re finds fast.
_LEADING_ZERO = re.compile(r"0(?<=[ .:/]0)[0-9]")


def has_leading_zero(text: str) -> bool:
    """Whether `text` may be a legacy value."""
    return _LEADING_ZERO.search(" " + text) is not None


def any_leading_zero(texts: list[str]) -> bool:
    """Whether any of `texts` may be a legacy value, in one regex pass (this runs on every
    address of the input). A space inside a text can only make the answer a false maybe."""
    return _LEADING_ZERO.search(" " + " ".join(texts)) is not None


def _without_leading_zeros(text: str) -> str | None:
    stripped = _LEGACY_ZEROS.sub(_STRIP_ZEROS, text, count=1)
    return stripped if stripped != text else None


def legacy_ip(text: str) -> str | None:
    """The canonical text of an address only ParseIPSloppy reads (leading zeros, decimal), or
    None: a strictly valid address, or one ParseIPSloppy refuses as well."""
    if canonical_ip(text) is not None:
        return None
    stripped = _without_leading_zeros(text)
    parsed = canonical_ip(stripped) if stripped is not None else None
    return parsed[1] if parsed is not None else None


def legacy_cidr(text: str) -> str | None:
    """The canonical network of a CIDR only ParseCIDRSloppy reads (leading zeros in its address
    or prefix length, decimal), or None: a strictly valid CIDR, or one it refuses as well."""
    if canonical_cidr(text) is not None:
        return None
    stripped = _without_leading_zeros(text)
    return canonical_cidr(stripped) if stripped is not None else None
