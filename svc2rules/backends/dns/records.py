"""ServiceRecords -> DNS resource records, following the Kubernetes DNS-Based Service Discovery
specification (github.com/kubernetes/dns, docs/specification.md, schema 1.1.0).

* ClusterIP Services: `<svc>.<ns>.svc` A/AAAA per ClusterIP; per named port
  `_<port>._<proto>.<svc>.<ns>.svc` SRV targeting `<svc>.<ns>.svc`.
* Headless Services: `<svc>.<ns>.svc` A/AAAA per ready endpoint, `<host>.<svc>.<ns>.svc` for each
  (host = the endpoint's hostname, else its address with dashes, as CoreDNS does); per named port
  one SRV per ready endpoint, with the endpoint's own port number.
* ExternalName Services: `<svc>.<ns>.svc` CNAME `<externalName>.`.

Owner names are relative to the cluster domain; record data is absolute. Services labelled for
another proxy are here too: DNS is not the proxy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from svc2rules.addresses import ip_sort_key
from svc2rules.backends.dns.names import (
    MAX_NAME,
    address_label,
    is_hostname,
    label,
    record_type,
    service_label,
)
from svc2rules.ir import DnsEndpoint, PortRecord, ServiceRecord

_TYPE_ORDER = {"CNAME": 0, "A": 1, "AAAA": 2, "SRV": 3}
SRV_PRIORITY = 0
SRV_WEIGHT_TOTAL = 100


@dataclass(frozen=True, slots=True)
class Record:
    owner: str  # relative to the zone origin
    type: str
    data: str


@dataclass(frozen=True, slots=True)
class ServiceRecords:
    records: tuple[Record, ...]
    warnings: tuple[str, ...] = ()


def service_records(svc: ServiceRecord, domain: str) -> ServiceRecords:
    """Every record one Service owns, sorted; names that DNS cannot hold become warnings."""
    ref = f"{svc.namespace}/{svc.name}"
    base = f"{label(svc.name)}.{label(svc.namespace)}.svc"
    if svc.type == "ExternalName":
        target = (svc.external_name or "").lower().removesuffix(".")
        if not is_hostname(target):
            return ServiceRecords((), (f"{ref}: externalName is not a valid DNS name; no CNAME written",))
        candidates = [Record(base, "CNAME", f"{target}.")]
    elif svc.headless:
        candidates = _headless(svc, base, domain)
    else:
        candidates = _cluster_ip(svc, base, domain)
    kept, warnings = [], []
    for record in dict.fromkeys(candidates):
        if len(record.owner) + 1 + len(domain) > MAX_NAME:
            warnings.append(f"{ref}: {record.owner}.{domain} is longer than {MAX_NAME} characters; skipped")
        else:
            kept.append(record)
    return ServiceRecords(tuple(sorted(kept, key=lambda r: _sort_key(r, base))), tuple(warnings))


def _cluster_ip(svc: ServiceRecord, base: str, domain: str) -> list[Record]:
    out = [Record(base, record_type(ip), ip) for ip in svc.cluster_ips]
    if svc.cluster_ips:
        target = f"{base}.{domain}."
        for port in _named(svc.ports):
            owner = f"{service_label(port.name, port.protocol.value)}.{base}"
            out.append(Record(owner, "SRV", _srv(SRV_WEIGHT_TOTAL, port.port, target)))
    return out


def _headless(svc: ServiceRecord, base: str, domain: str) -> list[Record]:
    ready = [ep for ep in svc.endpoints if ep.ready]
    out: list[Record] = []
    for ep in ready:
        out.append(Record(base, record_type(ep.ip), ep.ip))
        out.append(Record(f"{_host(ep)}.{base}", record_type(ep.ip), ep.ip))
    for port in _named(svc.ports):
        owner = f"{service_label(port.name, port.protocol.value)}.{base}"
        targets = [
            (ep_port.port, f"{_host(ep)}.{base}.{domain}.")
            for ep in ready
            for ep_port in ep.ports
            if (ep_port.name, ep_port.protocol) == (port.name, port.protocol)
        ]
        weight = max(1, SRV_WEIGHT_TOTAL // len(targets)) if targets else 0
        out += [Record(owner, "SRV", _srv(weight, number, target)) for number, target in targets]
    return out


def _host(ep: DnsEndpoint) -> str:
    return label(ep.hostname) if ep.hostname else address_label(ep.ip)


def _named(ports: Iterable[PortRecord]) -> list[PortRecord]:
    # The specification gives unnamed ports no SRV record.
    return [p for p in ports if p.name]


def _srv(weight: int, port: int, target: str) -> str:
    return f"{SRV_PRIORITY} {weight} {port} {target}"


def _sort_key(record: Record, base: str) -> tuple[bool, str, int, bytes | str]:
    data: bytes | str = ip_sort_key(record.data) if record.type in ("A", "AAAA") else record.data
    return (record.owner != base, record.owner, _TYPE_ORDER[record.type], data)
