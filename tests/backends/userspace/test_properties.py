"""Properties over random clusters: the rules point only at ports the proxy listens on, and
nothing from a manifest can change the structure of the payload."""

from __future__ import annotations

import copy
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from svc2rules.backends.userspace.layout import build_layout
from svc2rules.backends.userspace.ports import PortRange
from svc2rules.errors import InputError
from tests.backends.userspace.helpers import CONFIG, plan_of
from tests.property.helpers import compile_objects
from tests.property.strategies import clusters
from tests.property.test_injection import HOSTILE, IPTABLES_LINE

DEFAULT_RANGE = PortRange(20000, 29999)


@settings(max_examples=60, deadline=None)
@given(clusters())
def test_every_redirect_goes_to_a_port_the_proxy_listens_on_for_that_service(
    objects: list[dict[str, Any]],
) -> None:
    text = compile_objects(objects, "userspace")
    layout = build_layout(plan_of(objects, CONFIG), DEFAULT_RANGE)
    listening = {(lst.port, lst.protocol.keyword): lst.name for lst in layout}
    for line in text.splitlines():
        target = re.search(r"-p (tcp|udp) .*--to-ports (\d+)$", line)
        if target is None:
            continue
        proto, port = target.group(1), int(target.group(2))
        assert (port, proto) in listening, line
        assert f"{listening[(port, proto)]} " in line or f'{listening[(port, proto)]}"' in line, line


@settings(max_examples=60, deadline=None)
@given(clusters(max_services=2), st.sampled_from(["name", "namespace", "port-name"]), HOSTILE)
def test_hostile_names_are_rejected_or_harmless(objects: list[dict[str, Any]], field: str, text: str) -> None:
    hostile = copy.deepcopy(objects)
    svc = hostile[0]
    if field == "name":
        svc["metadata"]["name"] = text
    elif field == "namespace":
        svc["metadata"]["namespace"] = text
    else:
        svc["spec"]["ports"][0]["name"] = text
    try:
        output = compile_objects(hostile, "userspace")
    except InputError:
        return
    for line in output.splitlines():
        assert IPTABLES_LINE.match(line), f"unexpected line shape: {line!r}"
    assert output.count("\nCOMMIT\n") == 2
