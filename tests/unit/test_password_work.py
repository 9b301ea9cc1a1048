"""bcrypt a few at a time: a burst of sign-ins queues for the cores instead of sharing them
until every one misses the gateway's timeout, and one that would wait too long is a 429."""

from __future__ import annotations

import threading
import time

import pytest

from services.auth.password_work import RETRY_AFTER_SECONDS, PasswordWork
from services.common.errors import Throttled


def test_a_password_is_hashed_and_checked() -> None:
    work = PasswordWork(slots=1)
    stored = work.hash(b"correct horse", 4)
    assert work.check(b"correct horse", stored)
    assert not work.check(b"wrong horse", stored)


def test_no_more_than_the_slots_run_at_once_and_the_rest_wait_their_turn() -> None:
    work = PasswordWork(slots=2, max_wait=5)
    running, most = 0, 0
    lock = threading.Lock()

    def sign_in() -> None:
        nonlocal running, most
        with work.slot():
            with lock:
                running += 1
                most = max(most, running)
            time.sleep(0.02)
            with lock:
                running -= 1

    threads = [threading.Thread(target=sign_in) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most == 2


def test_a_sign_in_that_would_wait_too_long_is_refused_with_retry_after() -> None:
    work = PasswordWork(slots=1, max_wait=0.05)
    with work.slot(), pytest.raises(Throttled) as refused:
        work.check(b"pw", b"$2b$04$" + b"x" * 53)
    assert refused.value.retry_after == RETRY_AFTER_SECONDS
    assert "busy" in str(refused.value)
    assert work.check(b"pw", work.hash(b"pw", 4))  # the slot is back
