"""Source epochs: which epoch a record belongs to, by where it sits in its topic partition."""

from __future__ import annotations

import pytest

from cdcapp.debezium.connect import DecodeError
from cdcapp.debezium.epochs import EPOCH_SHIFT, MAX_EPOCH, Epoch, Epochs


def two_epochs() -> Epochs:
    epochs = Epochs()
    epochs.add("mariadb", Epoch(1, {("oltp.orders", 0): 100, ("oltp.orders", 1): 50}))
    epochs.add("mariadb", Epoch(2, {("oltp.orders", 0): 300, ("oltp.orders", 1): 50}))
    return epochs


def test_a_record_takes_the_epoch_that_starts_at_or_before_its_offset() -> None:
    epochs = two_epochs()
    assert [epochs.number("mariadb", "oltp.orders", 0, o) for o in (0, 99, 100, 299, 300, 10**9)] == [0, 0, 1, 1, 2, 2]
    assert epochs.number("mariadb", "oltp.orders", 1, 49) == 0
    assert epochs.number("mariadb", "oltp.orders", 1, 50) == 2


def test_a_partition_created_after_the_reset_is_all_new_epoch() -> None:
    assert two_epochs().number("mariadb", "oltp.customers", 3, 0) == 2


def test_other_sources_are_untouched() -> None:
    epochs = two_epochs()
    assert epochs.number("postgres", "oltp.orders", 0, 500) == 0
    assert epochs.position("postgres", "oltp.orders", 0, 500, 12345) == 12345


def test_positions_of_a_later_epoch_order_above_every_earlier_one() -> None:
    epochs = two_epochs()
    old = epochs.position("mariadb", "oltp.orders", 0, 10, (1 << EPOCH_SHIFT) - 1)
    first = epochs.position("mariadb", "oltp.orders", 0, 150, 1)
    second = epochs.position("mariadb", "oltp.orders", 0, 400, 1)
    assert old < first < second < 1 << 63


def test_a_raw_position_too_large_for_an_epoch_is_refused() -> None:
    with pytest.raises(DecodeError, match="does not fit"):
        two_epochs().position("mariadb", "oltp.orders", 0, 400, 1 << EPOCH_SHIFT)


def test_encoding_round_trips_and_the_next_epoch_counts_on() -> None:
    epochs = two_epochs()
    loaded = Epochs.from_records({b"mariadb": Epochs.encode(epochs.by_source["mariadb"])})
    assert loaded == epochs
    assert loaded.next_epoch("mariadb", {("t", 0): 7}) == Epoch(3, {("t", 0): 7})
    assert loaded.next_epoch("sqlite-x", {}) == Epoch(1, {})


def test_epochs_are_bounded() -> None:
    epochs = Epochs()
    for n in range(1, MAX_EPOCH + 1):
        epochs.add("mariadb", Epoch(n, {}))
    with pytest.raises(ValueError, match="rebuild"):
        epochs.next_epoch("mariadb", {})
