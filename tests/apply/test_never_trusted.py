"""Issue 20, points 2, 3 and 5, on the real kernel in throw-away namespaces:

* drift inside our own objects (a deleted nft element, a flushed chain of ours) stays within
  the sync period (documented) and is repaired by the first run after it has passed;
* a table or chains under our names that exist without our marker (docker-like ones) are
  refused by apply, diff and cleanup (exit 2, one line) and survive byte-identical;
* a state file that is edited, damaged, of the wrong shape or pointed back at an earlier copy
  of itself is not trusted: a warning, our objects read back and reloaded, rules correct.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from .helpers import BACKENDS, Host, small_cluster, synthetic_cluster

pytestmark = pytest.mark.root

# What docker (28, on iptables-nft) creates: `table ip filter` and `table ip nat` in nftables,
# with a DOCKER-FORWARD chain that `--chain-prefix DOCKER` would call its own.
DOCKER_IPTABLES = """*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-USER - [0:0]
:DOCKER-FORWARD - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-FORWARD
-A DOCKER-FORWARD -j DOCKER-ISOLATION-STAGE-1
-A DOCKER-FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A DOCKER-FORWARD -o docker0 -j DOCKER
-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j RETURN
COMMIT
"""


def write(folder: Path, text: str, name: str = "cluster.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def applied(proc_stderr: str) -> bool:
    return "applied (" in proc_stderr


# -- point 2: drift repair within a period ------------------------------------------------------


def drift(host: Host, backend: str) -> None:
    """Someone changes the inside of our objects (not a jump, not a marker)."""
    if backend == "nftables":
        host.run(["nft", "delete", "element", "ip", "svc2rules", "service-ips", "{ 172.30.0.41 . tcp . 80 }"])
        return
    service_chains = [
        line.split()[0][1:] for line in host.save("nat").splitlines() if line.startswith(":SVC2R-SVC-")
    ]
    assert service_chains
    host.run(["iptables", "-t", "nat", "-F", service_chains[0]])


@pytest.mark.parametrize("backend", BACKENDS)
def test_drift_stays_within_the_period_and_is_repaired_after_it(
    host: Host, manifests: Path, backend: str
) -> None:
    path = write(manifests, small_cluster())
    first = host.cli("apply", "-f", str(path), "--sync-period", "2s", backend=backend)
    assert first.returncode == 0, first.stderr
    checked = time.monotonic()
    wanted = host.ours(backend)
    drift(host, backend)
    drifted = host.ours(backend)
    assert drifted != wanted
    # Within the period: the state and the marker are trusted; the drift stays (README says so).
    within = host.cli("apply", "-f", str(path), "--sync-period", "1h", backend=backend)
    assert within.returncode == 0 and "no changes" in within.stderr, within.stderr
    assert "periodic full check" not in within.stderr
    assert host.ours(backend) == drifted
    # Past the period (2 s since the first apply's full check): read back and repaired.
    time.sleep(max(0.0, checked + 2.5 - time.monotonic()))
    after = host.cli("apply", "-f", str(path), "--sync-period", "2s", backend=backend)
    assert after.returncode == 0 and applied(after.stderr), after.stderr
    assert "periodic full check" in after.stderr
    assert host.ours(backend) == wanted
    # The repair was a full check: the next run within the period trusts the state again.
    again = host.cli("apply", "-f", str(path), backend=backend)
    assert again.returncode == 0 and "no changes" in again.stderr, again.stderr
    assert "periodic full check" not in again.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_resync_and_a_zero_period_repair_at_once(host: Host, manifests: Path, backend: str) -> None:
    path = write(manifests, small_cluster())
    assert host.cli("apply", "-f", str(path), backend=backend).returncode == 0
    wanted = host.ours(backend)
    for flags in (["--resync"], ["--sync-period", "0"]):
        drift(host, backend)
        proc = host.cli("apply", "-f", str(path), *flags, backend=backend)
        assert proc.returncode == 0 and applied(proc.stderr), proc.stderr
        assert host.ours(backend) == wanted, flags


def test_a_bad_sync_period_is_refused(host: Host, manifests: Path) -> None:
    path = write(manifests, small_cluster())
    proc = host.cli("apply", "-f", str(path), "--sync-period", "an hour")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--sync-period" in proc.stderr
    assert host.ours_iptables() == ""


# -- point 3: ownership guards ------------------------------------------------------------------


def docker_like(host: Host) -> tuple[str, str]:
    host.run(["iptables-restore", "-w"], stdin=DOCKER_IPTABLES)
    return host.foreign_iptables(), host.ruleset()


def refused(proc_stderr: str, returncode: int, *words: str) -> bool:
    lines = proc_stderr.splitlines()
    return returncode == 2 and len(lines) == 1 and all(word in lines[0] for word in words)


def test_an_existing_foreign_nft_table_is_neither_replaced_nor_removed(host: Host, manifests: Path) -> None:
    path = write(manifests, small_cluster())
    _, ruleset = docker_like(host)
    assert "table ip filter" in ruleset and "DOCKER-FORWARD" in ruleset
    # --force lets a reserved name through the name check; the table on the host still wins.
    for command in (
        ["apply", "-f", str(path), "--table", "filter", "--force"],
        ["diff", "-f", str(path), "--table", "filter"],
        ["cleanup", "--table", "filter", "--force"],
        ["apply", "-f", str(path), "--table", "filter", "--force", "--dry-run"],
    ):
        proc = host.cli(*command, backend="nftables")
        assert refused(proc.stderr, proc.returncode, "--table filter", "table ip filter", "someone else's"), (
            command,
            proc.returncode,
            proc.stderr,
        )
        assert host.ruleset() == ruleset, command
    # A name not reserved, taken by someone else on this host.
    host.run(["nft", "add", "table", "ip", "theirs"])
    host.run(["nft", "add", "chain", "ip", "theirs", "input", "{ type filter hook input priority 0; }"])
    ruleset = host.ruleset()
    for command in (["apply", "-f", str(path), "--table", "theirs"], ["cleanup", "--table", "theirs"]):
        proc = host.cli(*command, backend="nftables")
        assert refused(proc.stderr, proc.returncode, "--table theirs"), (command, proc.stderr)
        assert host.ruleset() == ruleset
    # Our own table stays ours: applied, re-applied, cleaned up.
    assert host.cli("apply", "-f", str(path), backend="nftables").returncode == 0
    assert host.cli("apply", "-f", str(path), backend="nftables").returncode == 0
    assert host.cli("cleanup", backend="nftables").returncode == 0
    assert host.ruleset() == ruleset


def test_foreign_chains_under_our_prefix_are_neither_replaced_nor_removed(
    host: Host, manifests: Path
) -> None:
    path = write(manifests, small_cluster())
    foreign, _ = docker_like(host)
    whole = host.run(["iptables-save"]).stdout
    for command in (
        ["apply", "-f", str(path), "--chain-prefix", "DOCKER"],
        ["diff", "-f", str(path), "--chain-prefix", "DOCKER"],
        ["cleanup", "--chain-prefix", "DOCKER"],
    ):
        proc = host.cli(*command, backend="iptables")
        assert refused(proc.stderr, proc.returncode, "--chain-prefix DOCKER", "DOCKER-FORWARD"), (
            command,
            proc.stderr,
        )
        assert host.foreign_iptables() == foreign
        assert _strip_dates(host.run(["iptables-save"]).stdout) == _strip_dates(whole)
    # The ipvs backend's companion chains (<prefix>-IPVS-*) are guarded the same way.
    host.run(["iptables", "-t", "nat", "-N", "DOCKER-IPVS-MASQUERADE"])
    proc = host.cli("cleanup", "--chain-prefix", "DOCKER", backend="ipvs")
    assert refused(proc.stderr, proc.returncode, "--chain-prefix DOCKER", "DOCKER-IPVS-MASQUERADE"), (
        proc.stderr
    )
    host.run(["iptables", "-t", "nat", "-X", "DOCKER-IPVS-MASQUERADE"])
    # An older docker (no DOCKER-FORWARD) leaves the prefix free: ours are added and removed
    # around docker's chains.
    host.run(["iptables", "-D", "FORWARD", "-j", "DOCKER-FORWARD"])
    host.run(["iptables", "-F", "DOCKER-FORWARD"])
    host.run(["iptables", "-X", "DOCKER-FORWARD"])
    foreign = host.foreign_iptables()
    proc = host.cli("apply", "-f", str(path), "--chain-prefix", "DOCKER", backend="iptables")
    assert proc.returncode == 0, proc.stderr
    proc = host.cli("cleanup", "--chain-prefix", "DOCKER", backend="iptables")
    assert proc.returncode == 0, proc.stderr
    assert host.foreign_iptables() == foreign


def _strip_dates(save: str) -> str:
    return "\n".join(line for line in save.splitlines() if not line.startswith("#"))


# -- point 5: checked state ---------------------------------------------------------------------


def state_path(host: Host, backend: str) -> Path:
    return host.state_dir / f"{backend}.json"


def read_state(host: Host, backend: str) -> dict[str, object]:
    data = json.loads(state_path(host, backend).read_text())
    assert isinstance(data, dict)
    return data


def sign(state: dict[str, object]) -> str:
    """The state as the store writes it: JSON, then the SHA-256 of the text before the checksum."""
    body = json.dumps({k: v for k, v in state.items() if k != "checksum"}, separators=(",", ":"))
    return f'{body[:-1]},"checksum":"{hashlib.sha256(body.encode()).hexdigest()}"}}'


def tamper_entry(backend: str) -> str:
    return "jumps" if backend == "iptables" else "blocks"


def assert_reloaded(host: Host, paths: list[Path], backend: str, wanted: str, *words: str) -> None:
    files = [arg for path in paths for arg in ("-f", str(path))]
    proc = host.cli("apply", *files, backend=backend)
    assert proc.returncode == 0, proc.stderr
    assert "warning: state file" in proc.stderr and all(w in proc.stderr for w in words), proc.stderr
    assert "not trusted" in proc.stderr and "internal error" not in proc.stderr
    assert applied(proc.stderr), proc.stderr
    assert host.ours(backend) == wanted
    # The reload wrote a state that is trusted again.
    proc = host.cli("apply", *files, backend=backend)
    assert proc.returncode == 0 and "no changes" in proc.stderr and "warning" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_edited_or_damaged_state_is_not_trusted(host: Host, manifests: Path, backend: str) -> None:
    path = write(manifests, small_cluster())
    assert host.cli("apply", "-f", str(path), backend=backend).returncode == 0
    wanted = host.ours(backend)
    entry = tamper_entry(backend)
    file = state_path(host, backend)

    # An entry emptied by hand (the checksum no longer matches).
    state = read_state(host, backend)
    state[entry] = {}
    file.write_text(json.dumps(state))
    assert_reloaded(host, [path], backend, wanted, "fails its checksum")

    # An entry of the wrong type, even with a checksum that matches: the shape is checked.
    state = read_state(host, backend)
    state[entry] = "nope"
    file.write_text(sign(state))
    assert_reloaded(host, [path], backend, wanted, f"{entry}: a string, not an object")

    # One flipped byte.
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0x01
    file.write_bytes(bytes(data))
    assert_reloaded(host, [path], backend, wanted, "checksum")


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_state_pointed_back_at_an_earlier_copy_is_not_trusted(
    host: Host, manifests: Path, backend: str
) -> None:
    first = write(manifests, small_cluster())
    changed = write(manifests, small_cluster(endpoints=("10.180.0.1", "10.180.0.3")), "changed.yaml")
    # Enough Services that a one-Service change is appended to the bulk log, not a new log.
    others = write(manifests, synthetic_cluster(60, 2), "others.json")
    assert host.cli("apply", "-f", str(first), "-f", str(others), backend=backend).returncode == 0
    wanted_first = host.ours(backend)
    earlier = read_state(host, backend)
    proc = host.cli("apply", "-f", str(changed), "-f", str(others), backend=backend)
    assert proc.returncode == 0 and "incremental" in proc.stderr, proc.stderr
    wanted = host.ours(backend)
    later = read_state(host, backend)
    earlier_bulk, later_bulk = earlier["bulk"], later["bulk"]
    assert isinstance(earlier_bulk, dict) and isinstance(later_bulk, dict)
    # The change was appended to the same bulk log: the earlier records are still in it.
    assert later_bulk["file"] == earlier_bulk["file"]
    assert later_bulk["records"][: len(earlier_bulk["records"])] == earlier_bulk["records"]

    # The later file (the kernel's generation) naming the earlier records, re-signed, read by
    # the next change (a run with the same input never reads the records: the kernel has them).
    state_path(host, backend).write_text(sign({**later, "bulk": earlier_bulk}))
    drift(host, backend)  # what a state trusted this way would hide
    assert_reloaded(host, [first, others], backend, wanted_first, "names bulk records of generation")

    # The whole earlier file put back: its generation is not the kernel's.
    state_path(host, backend).write_text(sign(earlier))
    drift(host, backend)
    proc = host.cli("apply", "-f", str(changed), "-f", str(others), backend=backend)
    assert proc.returncode == 0 and "does not match the kernel" in proc.stderr, proc.stderr
    assert applied(proc.stderr) and host.ours(backend) == wanted
