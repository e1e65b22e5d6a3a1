"""`svc2rules explain`: what happens to one connection, computed from the resolved model."""

from svc2rules.explain.model import Candidate, Explanation, Match, Origin, Query, Step, Verdict
from svc2rules.explain.text import format_text
from svc2rules.explain.trace import explain

__all__ = [
    "Candidate",
    "Explanation",
    "Match",
    "Origin",
    "Query",
    "Step",
    "Verdict",
    "explain",
    "format_text",
]
