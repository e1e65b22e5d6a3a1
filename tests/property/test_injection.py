"""No string from a manifest can change the structure of the generated rules."""

from __future__ import annotations

import copy
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from svc2rules.errors import InputError
from svc2rules.syntax.xtables import comment
from tests.property.helpers import compile_objects
from tests.property.strategies import clusters

HOSTILE = st.one_of(
    st.text(min_size=1, max_size=80),
    st.sampled_from(
        [
            'x"\n-A INPUT -j ACCEPT\n#',
            "a\nCOMMIT\n*filter\n:INPUT DROP",
            "} ; flush ruleset ; table ip x {",
            "$(reboot)",
            "`id`",
            "ns1/svc1:p80 -j ACCEPT",
            '\\" -j DROP \\"',
            "a\rb",
            "\x00",
        ]
    ),
)

# The shape of every line an iptables-restore payload of ours may contain.
IPTABLES_LINE = re.compile(
    r'^(#[^\n]*|\*(filter|nat)|COMMIT|:[A-Z0-9-]+ - \[0:0\]|-[AI] [A-Z0-9-]+( 1)?( [^"\n]+| "[A-Za-z0-9 ._:/\-\[\]>,;()\'=?]*")*)$'
)


@settings(max_examples=40, deadline=None)
@given(clusters(max_services=3), HOSTILE)
def test_unvalidated_fields_never_reach_the_output(objects: list[dict[str, Any]], text: str) -> None:
    baseline = compile_objects(objects)
    hostile = copy.deepcopy(objects)
    for obj in hostile:
        obj["metadata"].setdefault("annotations", {})["note"] = text
        obj["metadata"].setdefault("labels", {})["team"] = text
        obj["x-extra"] = text
        if obj["kind"] == "EndpointSlice":
            for ep in obj["endpoints"]:
                ep["targetRef"] = {"kind": "Pod", "name": text}
        else:
            obj["spec"]["selector"] = {"app": text}
            obj["spec"]["ports"][0]["appProtocol"] = text
    assert compile_objects(hostile) == baseline


FIELDS = ["name", "namespace", "port-name", "node-name", "target-port", "slice-port-name"]


@settings(max_examples=150, deadline=None)
@given(clusters(max_services=2), st.sampled_from(FIELDS), HOSTILE)
def test_validated_fields_are_rejected_or_harmless(
    objects: list[dict[str, Any]], field: str, text: str
) -> None:
    hostile = copy.deepcopy(objects)
    svc = hostile[0]
    slices = [
        o
        for o in hostile
        if o["kind"] == "EndpointSlice"
        and o["metadata"]["labels"]["kubernetes.io/service-name"] == svc["metadata"]["name"]
    ]
    if field == "name":
        svc["metadata"]["name"] = text
        for sl in slices:
            sl["metadata"]["labels"]["kubernetes.io/service-name"] = text
    elif field == "namespace":
        svc["metadata"]["namespace"] = text
    elif field == "port-name":
        svc["spec"]["ports"][0]["name"] = text
    elif field == "target-port":
        svc["spec"]["ports"][0]["targetPort"] = text
    elif field == "node-name":
        for sl in slices:
            for ep in sl["endpoints"]:
                ep["nodeName"] = text
    elif field == "slice-port-name":
        for sl in slices:
            sl["ports"][0]["name"] = text
    try:
        output = compile_objects(hostile)
    except InputError as exc:
        assert all("\n" not in str(d) for d in exc.diagnostics)
        return
    for line in output.splitlines():
        assert IPTABLES_LINE.match(line), f"unexpected line shape: {line!r}"
    assert output.count("\nCOMMIT\n") == 2


@given(st.text())
def test_comments_cannot_escape_their_quotes(text: str) -> None:
    rendered = comment(text)
    assert rendered.startswith('-m comment --comment "') and rendered.endswith('"')
    assert rendered.count('"') == 2
    assert "\n" not in rendered and "\r" not in rendered and "\\" not in rendered
    assert len(rendered) <= len('-m comment --comment ""') + 256
