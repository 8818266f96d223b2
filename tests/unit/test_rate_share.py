"""Each worker takes its share of the business number's rate, by owned partitions."""

from __future__ import annotations

import pytest

from processors.graph_client import GraphClient
from processors.sender import Sender, share_of_partitions
from zapstream.settings import Settings


def test_shares_of_all_workers_add_up_to_the_whole_limit() -> None:
    assert share_of_partitions(8, 8) == 1.0
    assert share_of_partitions(3, 8) + share_of_partitions(5, 8) == 1.0
    assert share_of_partitions(2, 8) * 4 == 1.0
    assert share_of_partitions(0, 8) > 0  # between assignments: a trickle, never zero


async def test_a_sender_with_half_the_partitions_takes_half_the_rate_and_burst() -> None:
    settings = Settings(send_rate_per_s=80, send_burst=40)
    sender = Sender(GraphClient(settings), settings)
    before = sender._bucket("pnid")
    sender.set_share(0.5)
    after_new = sender._bucket("other")
    for bucket in (before, after_new):
        assert bucket.rate_per_s == 40
        assert bucket.burst == 20
        assert bucket.tokens <= 20
    with pytest.raises(ValueError, match="share"):
        sender.set_share(0)
