"""Settings: arguments win over the environment, which only ``settings.py`` reads; options that
would be ignored (beside ``settings=``) or do not exist are refused at construction."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.runnables import RunnableLambda

from langchain_label_studio import LabelStudioCallbackHandler, LabelStudioMiddleware, Settings, capture
from langchain_label_studio.settings import DEFAULT_OUTBOX_SCHEMA

ENV = [
    "LABEL_STUDIO_URL",
    "LABEL_STUDIO_API_KEY",
    "LABEL_STUDIO_STATE_DIR",
    "LABEL_STUDIO_OUTBOX_URL",
    "LABEL_STUDIO_OUTBOX_SCHEMA",
    "LABEL_STUDIO_DELIVERY",
    "LABEL_STUDIO_PROJECT_ID",
    "LABEL_STUDIO_FEEDBACK_SECRET",
    "XDG_STATE_HOME",
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No LABEL_STUDIO_* variable of the machine; the state in this test's directory."""
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LABEL_STUDIO_STATE_DIR", str(tmp_path / "state"))
    return monkeypatch


async def app(scope, receive, send) -> None:  # an ASGI app the middleware wraps (never called)
    raise AssertionError("not called")


def test_defaults(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = Settings()
    assert settings.url == "http://localhost:8080"
    assert settings.api_key is None and settings.outbox is None
    assert settings.state_dir == tmp_path / "state"
    assert settings.outbox_schema == DEFAULT_OUTBOX_SCHEMA and settings.deliver is True
    assert settings.redact is True and settings.redact_patterns == {} and settings.before_capture is None


def test_the_environment_fills_what_arguments_leave_out(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("LABEL_STUDIO_URL", "http://ls.example:8080/")
    clean_env.setenv("LABEL_STUDIO_API_KEY", "legacy-token")
    clean_env.setenv("LABEL_STUDIO_OUTBOX_URL", "postgresql://app@db/app")
    clean_env.setenv("LABEL_STUDIO_OUTBOX_SCHEMA", "capture")
    clean_env.setenv("LABEL_STUDIO_DELIVERY", " Off ")
    settings = Settings()
    assert settings.url == "http://ls.example:8080"  # no trailing slash
    assert settings.api_key == "legacy-token"
    assert settings.outbox == "postgresql://app@db/app" and settings.outbox_schema == "capture"
    assert settings.deliver is False

    explicit = Settings(url="http://other:1", api_key="k", outbox_schema="s", deliver=True)
    assert (explicit.url, explicit.api_key) == ("http://other:1", "k")
    assert (explicit.outbox_schema, explicit.deliver) == ("s", True)


def test_an_empty_variable_counts_as_unset(clean_env: pytest.MonkeyPatch) -> None:
    for name in ("LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY", "LABEL_STUDIO_OUTBOX_URL", "LABEL_STUDIO_DELIVERY"):
        clean_env.setenv(name, "")
    settings = Settings()
    assert (settings.url, settings.api_key, settings.outbox, settings.deliver) == (
        "http://localhost:8080",
        None,
        None,
        True,
    )


def test_state_dir_from_xdg_state_home_unless_relative(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.delenv("LABEL_STUDIO_STATE_DIR")
    clean_env.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert Settings().state_dir == tmp_path / "xdg" / "langchain-label-studio"
    clean_env.setenv("XDG_STATE_HOME", "relative/dir")
    assert Settings().state_dir == Path.home() / ".local" / "state" / "langchain-label-studio"
    assert Settings(state_dir="~/x").state_dir == Path.home() / "x"


def test_an_outbox_that_is_not_postgres_is_refused(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="postgresql://"):
        Settings(outbox="mysql://db")
    clean_env.setenv("LABEL_STUDIO_OUTBOX_URL", "sqlite:///x.db")
    with pytest.raises(ValueError, match="sqlite:///x.db"):
        Settings()


def test_the_feedback_secret_comes_from_the_argument_else_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    assert LabelStudioMiddleware(app).feedback is None  # no secret: feedback off
    clean_env.setenv("LABEL_STUDIO_FEEDBACK_SECRET", "from-env")
    from_env = LabelStudioMiddleware(app).feedback
    assert from_env is not None and from_env.secret == b"from-env"
    explicit = LabelStudioMiddleware(app, feedback_secret="explicit").feedback
    assert explicit is not None and explicit.secret == b"explicit"


def test_the_handler_project_id_comes_from_the_argument_else_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    assert LabelStudioCallbackHandler().project_id is None
    clean_env.setenv("LABEL_STUDIO_PROJECT_ID", " 42 ")
    assert LabelStudioCallbackHandler().project_id == 42
    assert LabelStudioCallbackHandler(project_id=7).project_id == 7
    clean_env.setenv("LABEL_STUDIO_PROJECT_ID", "Jokes")
    with pytest.raises(ValueError, match="LABEL_STUDIO_PROJECT_ID must be a Label Studio project id"):
        LabelStudioCallbackHandler()


def test_components_take_settings_or_options(tmp_path: Path) -> None:
    settings = Settings(url="http://ls.example", api_key="k", state_dir=tmp_path / "s", redact=False)
    assert LabelStudioMiddleware(app, settings=settings).pipeline.settings == settings
    assert LabelStudioCallbackHandler(settings=settings).pipeline.settings == settings
    assert LabelStudioMiddleware(app, redact=False, url="http://ls.example/").pipeline.settings.redact is False
    handler = LabelStudioCallbackHandler(url="http://ls.example/", api_key="k")
    assert (handler.url, handler.api_key) == ("http://ls.example", "k")


@pytest.mark.parametrize(
    "make",
    [
        lambda s: LabelStudioMiddleware(app, settings=s, url="http://other"),
        lambda s: LabelStudioMiddleware(app, settings=s, redact=False),
        lambda s: LabelStudioMiddleware(app, settings=s, before_capture=lambda r: r),
        lambda s: LabelStudioCallbackHandler(api_key="k", settings=s),
        lambda s: LabelStudioCallbackHandler(settings=s, state_dir="/tmp/x"),
        lambda s: capture(RunnableLambda(lambda x: x), settings=s, url="http://other"),
    ],
    ids=["middleware-url", "middleware-redact", "middleware-hook", "handler-key", "handler-state", "capture-url"],
)
def test_settings_beside_options_is_a_type_error(make, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="settings= together with"):
        make(Settings(state_dir=tmp_path / "s"))


def test_an_unknown_capture_option_is_a_type_error_naming_it() -> None:
    with pytest.raises(TypeError, match=r"capture\(\) got an unexpected keyword argument 'redact_pattern'"):
        capture(RunnableLambda(lambda x: x), redact_pattern={"X": "x"})
    captured = capture(RunnableLambda(lambda x: x), redact_patterns={"ORDER": r"#\d+"}, deliver=False)
    assert captured.invoke(3) == 3
