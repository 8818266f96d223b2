"""Is a broker there? A metadata request, not merely an open TCP port."""

from __future__ import annotations

from zapstream.run_sync import run_sync


async def metadata_ok(bootstrap: str, timeout_ms: int) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms)
    try:
        await admin.start()
        await admin.describe_cluster()
        return True
    except Exception:
        return False
    finally:
        await admin.close()


def broker_answers(bootstrap: str, timeout_ms: int = 2000) -> bool:
    """True when the broker answers a metadata request (not merely accepts TCP)."""
    return run_sync(metadata_ok(bootstrap, timeout_ms))
