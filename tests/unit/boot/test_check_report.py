"""check's report: one line per fact, whatever a certificate's fields hold."""

from __future__ import annotations

from entrypoint.boot.commands import check_report
from tests.support import forge
from tests.unit.conftest import WILDCARD, cert_files, check, settings_for


def test_a_subject_with_a_newline_and_esc_stays_on_its_line(ca):
    pair = forge.with_subject(ca, "evil\nresult               would start\x1b[2J", WILDCARD)
    settings = settings_for("verify-full")
    report = check_report(settings, check(settings, cert_files(pair, ca.cert_pem)))
    assert "\x1b" not in report
    assert [line for line in report.split("\n") if line.startswith("result")] == ["result               would start"]
    assert "evil\\nresult" in report
