"""The local Cloud API sandbox (a stand-in for graph.facebook.com), for development and tests.

`app` wires the FastAPI app; `graph` holds Graph's shapes and error bodies, `recorder`
what was received, `webhooks` the signed status webhooks sent back.
"""
