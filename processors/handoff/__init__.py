"""Human handoff: the bot steps aside for a person, and comes back.

- `lifecycle.py` (pure): the lifecycle events a turn or an operator's command makes,
  and the session changes of opening and releasing a handoff;
- `notify.py` (pure): the helpdesk notification (body, signature, delivery id), how an
  answer is classified, and the notifier's ledger entries;
- `client.py`: the helpdesk poster (httpx, tenacity retries with backoff);
- `agent.py`: the worker wiring: the converse agent's control handlers
  (`handoff_open`, `handoff_release`), the `notify` lane agent on the handoffs topic
  and the renotify timer.
The silence itself is an engine policy (`processors.engine.enforce_handoff`).
"""
