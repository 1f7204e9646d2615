"""errors.printable: what a message may carry into a log line or a terminal."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from entrypoint.errors import InputError, Problem, printable


@pytest.mark.parametrize("raw, shown", [("a\nb", "a\\nb"), ("\x1b[31m", "\\x1b[31m"), ("x\ry", "x\\ry"),
                                        ("\u202egnp.exe", "\\u202egnp.exe"), ("PCK_\udcff", "PCK_\\xff"),
                                        ("\ud800", "\\ud800"), ("tab\tok é", "tab\tok é")])
def test_printable_escapes_controls_and_undecodable_bytes(raw, shown):
    assert printable(raw) == shown


@given(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0xFFFF)))
def test_a_report_is_always_one_encodable_line_per_field(text):
    report = InputError([Problem(text, text, text)]).report()
    report.encode("utf-8")  # strict: a surrogate would raise
    assert len(report.split("\n")) == 3  # headline, where: what, fix
