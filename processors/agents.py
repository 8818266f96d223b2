"""All `@app.agent` wiring of the processing worker. Agents stay thin: decode, call a
pure function, store, route."""

from __future__ import annotations

import faust

from zapstream.settings import Settings


def register_agents(app: faust.App, settings: Settings) -> None:
    """The conversation chain's agents are registered here (dedupe, debounce, engine,
    sender). The skeleton has none: the sink reads the inbound topic directly."""
