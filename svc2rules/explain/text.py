"""The human-readable form of an Explanation (the JSON form is Explanation.to_dict)."""

from __future__ import annotations

from svc2rules.explain.model import Candidate, Explanation, Verdict

_VERDICT = {Verdict.REJECT: "REJECT", Verdict.DROP: "DROP", Verdict.NONE: "no service rule applies"}
# Steps that get their own line below the step list.
_SUMMARISED = {"match", "masquerade"}


def format_text(e: Explanation) -> str:
    q = e.query
    lines = [
        f"connection {q.src} -> {q.dst}:{q.port}/{q.protocol.value} from {e.origin.value} ({e.origin_reason})"
    ]
    match = next((s.detail for s in e.steps if s.step == "match"), "no Service port")
    lines.append(_line("matched", match))
    lines += [_line(s.step, s.detail) for s in e.steps if s.step not in _SUMMARISED]
    if e.verdict == Verdict.DNAT:
        lines.append(_line("verdict", e.reason))
        lines.append(_line("masquerade", f"{'yes' if e.masquerade else 'no'}: {e.masquerade_reason}"))
        if e.affinity_timeout is not None:
            lines.append(_line("affinity", f"ClientIP, timeout {e.affinity_timeout} s"))
        width = max(len(c.address) for c in e.endpoints)
        lines += [f"  {c.address:<{width}}  p={c.probability:.4f}  {_where(c)}" for c in e.endpoints]
    else:
        lines.append(_line("verdict", f"{_VERDICT[e.verdict]}: {e.reason}"))
    lines += [_line("note", note) for note in e.notes]
    lines += [_line("why", why) for why in e.why]
    return "\n".join(lines) + "\n"


def format_diagnosis(lines: list[str]) -> str:
    """`explain --service`: the answer first, then one fact a line."""
    head, *rest = lines
    return "\n".join([_line("why", head), *(" " * _WIDTH + line for line in rest)]) + "\n"


_WIDTH = 15  # of the label column


def _line(label: str, text: str) -> str:
    return f"{label + ':':<{_WIDTH}}{text}"


def _where(c: Candidate) -> str:
    where = "local" if c.local else f"remote{f' ({c.node})' if c.node else ''}"
    state = "ready" if c.ready else "serving, terminating" if c.serving and c.terminating else "not ready"
    return f"{where}, {state}" + (", hairpin: masqueraded" if c.hairpin else "")
