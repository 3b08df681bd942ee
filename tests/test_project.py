"""Project definitions are checked when the app starts, not when Label Studio refuses them."""

from __future__ import annotations

import pytest

from langchain_label_studio import Project


def test_bad_projects_are_refused_at_once():
    with pytest.raises(ValueError, match="at most 50 characters"):
        Project("A project title that Label Studio would refuse: it is long")
    with pytest.raises(ValueError, match="mode must be"):
        Project("Chats", mode="dialogue")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sample_rate"):
        Project("Chats", sample_rate=1.5)
    assert Project("x" * 50).title() == "x" * 50
    assert Project("LangChain-%Y-%m-%d").title().startswith("LangChain-20")
