"""Inbound media: the media agent fetches each image, audio, video, document and
sticker through the Graph API and stores its bytes content-addressed under MEDIA_DIR.

- `jobs.py`   pure: which messages carry media, sha256 forms, the events reported;
- `store.py`  the folder: `<MEDIA_DIR>/<sha256[:2]>/<sha256>`, temp file + atomic rename;
- `fetch.py`  the Graph calls (`GET /{media-id}`, the streamed download), typed errors;
- `agent.py`  the worker's `media` agent: retries, outcomes on `{prefix}.media.v1`.
"""
