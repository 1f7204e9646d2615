"""verify's redaction (unit level): the password's value is hidden, the values shown on purpose are not mangled."""

from __future__ import annotations

import pytest

from entrypoint.audit.redact import REDACTED, Redactor


def _redactor(password: str, **shown: str) -> Redactor:
    redactor = Redactor()
    redactor.secret(password)
    redactor.shown(shown.values())
    return redactor


def test_a_password_equal_to_the_user_name_does_not_blank_the_user():
    redactor = _redactor("postgres", user="postgres", host="db-0", dbname="postgres")
    text = 'connection to "db-0" failed: FATAL: password authentication failed for user "postgres" password=postgres'
    assert redactor.scrub(text) == ('connection to "db-0" failed: FATAL: password authentication failed for user '
                                    f'"postgres" password={REDACTED}')


def test_the_password_is_hidden_wherever_it_stands_alone():
    redactor = _redactor("s3cr3t-Pw", user="postgres")
    scrubbed = redactor.scrub("server said: s3cr3t-Pw; uri postgresql://postgres:s3cr3t-Pw@db-0/x")
    assert "s3cr3t-Pw" not in scrubbed and scrubbed.count(REDACTED) == 2


def test_a_password_that_is_part_of_a_shown_value_does_not_mangle_it():
    """A password `gres` must not turn `user "postgres"` into `user "post<redacted>"` (and so reveal it)."""
    redactor = _redactor("gres", user="postgres", host="db-0")
    assert redactor.scrub('password authentication failed for user "postgres"') == \
        'password authentication failed for user "postgres"'
