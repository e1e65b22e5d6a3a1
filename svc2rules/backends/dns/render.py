"""Plan -> zone file or hosts file. Which records exist is decided in records.py; this module adds
the zone's own records (SOA, NS, glue, schema version) and picks the format."""

from __future__ import annotations

import hashlib

from svc2rules.backends import Artifact, ArtifactPart, RenderOptions
from svc2rules.backends.dns.names import record_type
from svc2rules.backends.dns.options import DnsFlags, DnsOptions, dns_options
from svc2rules.backends.dns.records import Record, service_records
from svc2rules.ir import Plan
from svc2rules.templating import render_template

SCHEMA_VERSION = "1.1.0"
# CoreDNS's kubernetes plugin answers with a 5 s TTL: clients must notice endpoint changes soon.
TTL = 5
# SOA timers (refresh, retry, expire) as CoreDNS serves them; the negative-caching TTL is TTL.
SOA_TIMERS = (7200, 1800, 86400)
NS_OWNER = "ns.dns"  # ns.dns.<zone>: outside `svc`, so no Service can own the same name
HOSTMASTER = "hostmaster"


def render_dns(plan: Plan, options: RenderOptions[DnsFlags]) -> Artifact:
    opts = dns_options(plan, options.backend or DnsFlags())
    records: list[Record] = []
    warnings: list[str] = []
    for svc in plan.services:
        owned = service_records(svc, opts.domain)
        records += owned.records
        warnings += owned.warnings
    if opts.format == "hosts":
        return _hosts(records, opts, warnings)
    return _zone(records, opts, warnings)


def _zone(records: list[Record], opts: DnsOptions, warnings: list[str]) -> Artifact:
    zone = opts.domain
    head = [
        Record("@", "NS", f"{NS_OWNER}.{zone}."),
        Record(NS_OWNER, record_type(opts.server_ip), opts.server_ip),
        Record("dns-version", "TXT", f'"{SCHEMA_VERSION}"'),
    ]
    body = head + records
    soa = Record(
        "@",
        "SOA",
        " ".join(
            [
                f"{NS_OWNER}.{zone}.",
                f"{HOSTMASTER}.{zone}.",
                str(serial(body)),
                *map(str, SOA_TIMERS),
                str(TTL),
            ]
        ),
    )
    text = render_template("dns/zone.j2", zone=zone, ttl=TTL, version=SCHEMA_VERSION, records=[soa, *body])
    return Artifact("dns", (ArtifactPart(None, "a DNS server's zone file", text),), tuple(warnings))


def serial(records: list[Record]) -> int:
    """A serial that changes when the records do and never when they do not (no clock).

    It is not monotonic: secondaries that compare serials need a full transfer, not IXFR.
    """
    digest = hashlib.sha256("\n".join(f"{r.owner} {r.type} {r.data}" for r in records).encode()).digest()
    # 1 .. 2^31-1: positive in every tool, and never 0 (which some treat as "unset").
    return int.from_bytes(digest[:4], "big") % (2**31 - 1) + 1


def _hosts(records: list[Record], opts: DnsOptions, warnings: list[str]) -> Artifact:
    lines = [(r.data, f"{r.owner}.{opts.domain}") for r in records if r.type in ("A", "AAAA")]
    dropped = sorted({r.type for r in records if r.type not in ("A", "AAAA")})
    if dropped:
        count = sum(1 for r in records if r.type not in ("A", "AAAA"))
        warnings.append(
            f"hosts format: {count} {'/'.join(dropped)} record(s) cannot be written as hosts lines"
        )
    text = render_template("dns/hosts.j2", zone=opts.domain, lines=lines)
    return Artifact("dns", (ArtifactPart(None, "/etc/hosts", text),), tuple(warnings))
