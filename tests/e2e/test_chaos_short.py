"""The crash test's short round (issue 8, item 6), in ``make test``: the whole stack on an Apache
Kafka of its own, three workers SIGKILLed at moments drawn from a fixed seed while events of every
type stream in through the intake API and the clock moves, then compared with the dry run.
``make chaos`` runs twenty longer rounds (``tests/chaos/crash.py``, which says how each figure is
counted)."""

from __future__ import annotations

import pytest

from tests.chaos.crash import RoundConfig, run_round
from tests.conftest import needs_apache_kafka

pytestmark = [pytest.mark.integration, needs_apache_kafka]

#: Seed 27 kills orgstructure while the events stream in, reporting during the sweep after the first
#: clock step, and the notifier while the reminders of the second go out.
#: ``python -m tests.chaos.crash --rounds 1 --seed 27 --events 100 --kills 3 --steps 2`` runs the same round.
SHORT = RoundConfig(seed=27, events=100, kills=3, steps=2)


def test_workers_killed_at_random_lose_no_task_and_no_mail_and_send_at_most_the_one_in_flight_again(tmp_path):
    result = run_round(SHORT, tmp_path / "round", log=print)  # progress in the captured output
    print(result.summary())
    assert not result.errors, f"the round did not complete: {result.errors}; logs in {tmp_path / 'round' / 'var' / 'log'}"
    assert result.event_types == 10, "events of every type streamed in"
    assert sum(result.kills.values()) == SHORT.kills, f"every planned kill was made: {dict(result.kills)}"
    assert not result.unsettled, f"not settled (stuck): {result.unsettled}"
    assert not result.lost, (f"{len(result.lost)} task(s) of the dry run are not in the ledger "
                             f"({result.never_planned} never reached a task topic): " + "; ".join(result.lost[:10]))
    assert not result.extra, (f"{len(result.extra)} task(s) in the ledger the dry run does not plan "
                              f"({result.duplicate_tasks} a planned task under another id): " + "; ".join(result.extra[:10]))
    assert result.duplicate_mail_count <= result.allowed_duplicate_mails, (
        f"{result.duplicate_mail_count} duplicate mail(s) over {result.kills['notifier']} notifier kill(s): "
        + "; ".join(result.duplicate_mails[:10]))
    assert not result.unsent, (f"{len(result.unsent)} requested notification(s) never mailed: "
                               + "; ".join(result.unsent[:10]))
    assert not result.unknown_mails, f"mail for notifications nobody requested: {result.unknown_mails[:10]}"
    assert not result.fallback, f"mail to the fallback address by a race: {result.fallback[:10]}"
