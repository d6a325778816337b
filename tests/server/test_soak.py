"""A one-minute soak of an ``npgd-serve`` process (``benchmarks/server_soak.py``, which runs the
same for 30 minutes): three clients at once with npgd, cswv and int16 streams, clients killed
mid-stream and malformed ones. No image is lost, every image is bit-identical to the solo
reference through the server, and the server's threads and descriptors stay bounded and come
back to their idle count, its memory stays within a bound after the first window."""

from benchmarks.server_soak import CONFIGS, run_soak
from tests.conftest import needs_bart

CLIENTS = 3
RSS_GROWTH_MIB = 64  # above the first (warm-up) window; 5 minutes: +22 MiB after minute 1


@needs_bart
def test_one_minute_soak_loses_nothing_and_grows_nothing():
    result = run_soak(60, window_s=15, clients=CLIENTS, min_actions=3)
    assert result.failures == []
    outcomes = result.outcomes
    streams = [o for o in outcomes if o.action == "stream"]
    assert {o.config for o in streams} == set(CONFIGS)  # the seeded first draws cover all
    assert {o.action for o in outcomes} == {"stream", "killed", "malformed"}
    assert all(o.images == 2 and not o.lost and not o.mismatched for o in streams)
    idle, states = result.idle, [window.state for window in result.windows]
    bound = 4 * CLIENTS + 8  # two threads and one socket per connection, BART's pipes
    assert all(s.threads <= idle.threads + bound and s.fds <= idle.fds + bound for s in states)
    assert (result.final.threads, result.final.fds) == (idle.threads, idle.fds)
    warm = states[0].rss_mib
    assert max(s.rss_mib for s in [*states[1:], result.final]) <= warm + RSS_GROWTH_MIB
