"""load_engine: engines by name or import path, always awaitable and guarded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from processors.actions import SendTemplate, SendText
from processors.echo_engine import EchoEngine
from processors.engine import GuardedEngine, load_engine
from processors.http_engine import HttpEngine
from processors.playbook import PlaybookEngine
from schemas.conversation import Session, Turn
from tests.support.events import single_turn
from zapstream.errors import ConfigurationError

T0 = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)
USER = "5511900000001"
SETTINGS_LIKE = {
    "engine_http_url": "http://127.0.0.1:9/decide",
    "engine_http_timeout_s": 2.0,
    "playbook_path": None,
    "kafka_bootstrap_servers": None,  # unrelated settings are ignored
}


def turn(text: str = "oi") -> Turn:
    return single_turn(text, user=USER, at=T0)


@pytest.mark.parametrize(
    ("spec", "inner"),
    [
        ("playbook", PlaybookEngine),
        ("echo", EchoEngine),
        ("http", HttpEngine),
        ("processors.echo_engine:create_engine", EchoEngine),
    ],
)
async def test_engines_load_by_name_or_import_path(spec, inner):
    engine = load_engine(spec, **SETTINGS_LIKE)
    assert isinstance(engine, GuardedEngine)
    core = getattr(engine.engine, "engine", engine.engine)
    assert isinstance(core, inner)
    await engine.aclose()


async def test_a_pure_engine_is_awaited_through_the_adapter():
    engine = load_engine("echo")
    d = await engine.decide(None, turn("oi"), T0)
    assert d.actions == (SendText(body="echo: oi", reply_to="m1"),)


@pytest.mark.parametrize(
    "spec", ["nope", "processors.nowhere:make", "processors.engine:missing", "a.b"]
)
def test_an_unknown_engine_is_a_configuration_error(spec):
    with pytest.raises(ConfigurationError):
        load_engine(spec)


def test_the_http_engine_needs_a_url():
    with pytest.raises(ConfigurationError, match="ENGINE_HTTP_URL"):
        load_engine("http")


async def test_the_configured_template_replaces_late_free_form_replies():
    engine = load_engine(
        "echo", service_window_template="reengage", service_window_template_language="en_US"
    )
    d = await engine.decide(Session.new(USER), turn(), T0 + timedelta(hours=1))
    # Echo answered at once, inside the window reopened by the turn itself.
    assert d.actions == (SendText(body="echo: oi", reply_to="m1"),)
    late = await engine.decide(None, turn(), T0 + timedelta(hours=25))
    assert late.actions == (SendTemplate(name="reengage", language="en_US"),)
