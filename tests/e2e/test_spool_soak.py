"""The spool's long-run variant: a 60 s outage under 5,000 records/s. Skipped
unless SOAK=1 (make check runs the 20 s one in test_spool.py)."""
import os

import pytest

from test_spool import long_outage, upstream  # noqa: F401 (upstream is a fixture)

pytestmark = pytest.mark.skipif(os.environ.get("SOAK") != "1", reason="long run: set SOAK=1")


def test_60s_outage_under_load_all_arrive_and_memory_stays_bounded(agentd, upstream, pg):  # noqa: F811
    """60 s of outage at 5,000 records/s (300,000 records): all arrive once the
    upstream is back; VmHWM stays under [queue] max_bytes (8M) + 24 MiB."""
    long_outage(agentd, upstream, pg, 60)
