"""`zapstream up` and the long-running processes it starts.

`supervisor` starts and watches the whole stack; `runners` are the entry points of
the webhook API, the worker and the sink (`zapstream api|worker|sink`).
"""
