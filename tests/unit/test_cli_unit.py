"""The command line refuses durations and thresholds that make no sense, before doing anything."""

from __future__ import annotations

import pytest

from langchain_label_studio import cli


@pytest.mark.parametrize(
    "argv",
    [
        ["deliver", "--report-every", "-1"],
        ["deliver", "--drain-timeout", "nan"],
        ["dead-letters", "retry", "--all", "--timeout", "-5"],
        ["export", "--project", "P", "--format", "rating", "--out", "x.jsonl", "--min-rating", "nan"],
        ["export", "--project", "P", "--format", "rating", "--out", "x.jsonl", "--label-threshold", "inf"],
    ],
)
def test_a_negative_or_not_finite_number_is_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "cannot be negative" in err or "not a finite number" in err
