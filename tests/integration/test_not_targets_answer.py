"""Good data is never dead-lettered by something that is not Target's answer, nor by a
typo in the configuration (issue 17, item 9)."""

from __future__ import annotations

from collections.abc import Callable

from tests.integration.conftest import Stack
from tests.integration.events import event

T0 = 1_700_000_000_000


def test_a_proxy_page_foreign_xml_and_an_edge_404_are_retried_not_dead_lettered(
    stack: Callable[..., Stack],
    topic_end_offsets: Callable[[str], dict[int, int]],
) -> None:
    s = stack(partitions=1, topics=1)
    s.emulator.control.inject(
        [
            {"api": "bulk", "status": 200, "body": "<html><body>Proxy login</body></html>"},
            {"api": "bulk", "status": 200, "body": "<result><ok>yes</ok></result>"},
            {"api": "bulk", "status": 404, "body": "<html>Not Found</html>"},
        ]
    )
    events = [event(f"crm-{i}", {"loyaltyTier": "gold", "n": i}, T0 + i) for i in range(20)]
    s.produce(events)
    s.run_to_idle()
    s.wait_for_state(s.expected())
    assert topic_end_offsets(s.dlq) == {0: 0}
    assert s.all_committed()
    assert len(s.emulator.control.faults()) == 0  # every injected answer was met


def test_a_wrong_client_code_stops_the_service_before_consuming_anything(
    stack: Callable[..., Stack],
    topic_end_offsets: Callable[[str], dict[int, int]],
    committed_offsets: Callable[[str, str], dict[int, int]],
) -> None:
    s = stack(partitions=1, topics=1)
    s.produce([event("crm-1", {"loyaltyTier": "gold"}, T0)])
    service = s.start(PROFILE_SYNC_TARGET_CLIENT="acmeretial")  # a typo
    assert service.wait(60) == 3
    errors = [e for e in service.log_events() if e.get("level") == "error"]
    assert any("client code" in str(e.get("error")) for e in errors), service.log_tail()
    assert topic_end_offsets(s.dlq) == {0: 0}
    assert committed_offsets(s.group, s.topics[0]) == {}


def test_a_url_that_is_not_target_stops_the_service(
    stack: Callable[..., Stack], tmp_path: object
) -> None:
    s = stack(partitions=1, topics=1)
    s.produce([event("crm-1", {"loyaltyTier": "gold"}, T0)])
    # The emulator's own control API answers JSON, not Target's XML: like a wrong path.
    service = s.start(PROFILE_SYNC_TARGET_URL=s.emulator.url + "/_emulator")
    assert service.wait(60) == 3
    assert "not Target's answer" in service.log_path.read_text()
