"""`--faults SPEC --fault-seed N`: the spec's kinds, and the same seed giving the same schedule."""

from __future__ import annotations

import pytest

from gasmon.errors import PublishError, StoreUnavailableError
from gasmon_local.__main__ import parse_args
from gasmon_local.faults import KINDS, FaultPlan, FaultSpecError, FaultyPublisher, FaultyReadingStore, parse_spec
from tests.fakes import MemoryPublisher, MemoryReadingStore
from tests.unit.test_alarm_effects import no2


def test_the_spec_names_exactly_the_issue_s_kinds() -> None:
    assert KINDS == (
        "store-lost-reply", "store-error", "store-throttle", "publish-error", "alarm-store-error", "notify-error"
    )  # fmt: skip
    assert parse_spec("store-lost-reply=0.3,publish-error=0.3,alarm-store-error=0.2") == {
        "store-lost-reply": 0.3,
        "publish-error": 0.3,
        "alarm-store-error": 0.2,
    }


@pytest.mark.parametrize("spec", ["store-lost=0.3", "publish-error", "publish-error=2", "publish-error=x"])
def test_a_bad_spec_is_refused_with_a_reason(spec: str) -> None:
    with pytest.raises(FaultSpecError):
        parse_spec(spec)
    with pytest.raises(SystemExit):
        parse_args(["--faults", spec])


def test_the_same_seed_gives_the_same_schedule_and_another_seed_another() -> None:
    def schedule(seed: int) -> list[bool]:
        plan = FaultPlan.from_spec("publish-error=0.5", seed)
        return [plan.fires("publish-error") for _ in range(64)]

    assert schedule(7) == schedule(7)
    assert schedule(7) != schedule(8)


def test_a_lost_reply_commits_the_write_then_fails() -> None:
    # Given a store whose every reply is lost
    inner = MemoryReadingStore()
    store = FaultyReadingStore(inner, FaultPlan({"store-lost-reply": 1.0}))
    # When a reading is stored, the call fails as a timeout would, but the reading is there
    with pytest.raises(StoreUnavailableError):
        store.put_readings([no2(90, 0)])
    assert list(inner.readings) == [no2(90, 0).reading_id]


def test_a_publish_error_publishes_nothing() -> None:
    inner = MemoryPublisher()
    with pytest.raises(PublishError):
        FaultyPublisher(inner, FaultPlan({"publish-error": 1.0})).publish("pi/1", {"warning": "no2 warning"})
    assert inner.messages == []


def test_the_cli_passes_faults_and_seed_to_the_stack() -> None:
    options = parse_args(["--faults", "publish-error=0.3", "--fault-seed", "7"])
    assert (options.faults, options.fault_seed) == ("publish-error=0.3", 7)


def test_the_local_stack_wraps_what_each_function_would_build() -> None:
    from types import SimpleNamespace

    from gasmon_local.faults import FaultyAlarmStore, FaultyNotifier, handler_adapters
    from tests.fakes import MemoryAlarmStore

    plan = FaultPlan.from_spec("notify-error=0.5,publish-error=0.5", 7)
    # Given a function module's cached factories, as the ingest and presence functions have them
    ingest_module = SimpleNamespace(
        _store=MemoryReadingStore, _publisher=MemoryPublisher, _alarm_store=MemoryAlarmStore
    )
    presence_module = SimpleNamespace(_ports=lambda: SimpleNamespace(notifier=object()))
    # Then ingest gets a faulty store, publisher and alarm store; presence a faulty notifier
    ingest = handler_adapters("IngestFunction", ingest_module, plan)
    assert isinstance(ingest["store"], FaultyReadingStore) and isinstance(ingest["publisher"], FaultyPublisher)
    assert isinstance(ingest["alarm_store"], FaultyAlarmStore)
    assert isinstance(handler_adapters("CheckPresenceFunction", presence_module, plan)["notifier"], FaultyNotifier)
    # And functions without a faultable port, or a plan without faults, get nothing
    assert handler_adapters("DashboardFunction", SimpleNamespace(), plan) == {}
    assert handler_adapters("IngestFunction", ingest_module, FaultPlan({})) == {}
