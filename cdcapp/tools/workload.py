"""The OLTP workload: an e-commerce application writing to PostgreSQL, MariaDB or SQLite.

Each operation is one real transaction: new customers and products, orders with their
items, orders moving through pending -> paid -> shipped -> completed (or cancelled),
customers moving, products renamed, recategorised and repriced, items changed, moved or
deleted, orders reassigned or deleted, and now and then an unreferenced customer or product
removed. ``orders.total`` is kept equal to the sum of quantity * price of its items.

The rate is in row changes per second (one inserted, updated or deleted row = 1), paced by
a token bucket. Updates only ever write values that differ from the stored ones, so every
counted change is a change every source's CDC sees (MariaDB's binlog skips rows an UPDATE
leaves unchanged). Ids come from the database; the generator keeps the live ids it knows
to pick from, loaded from the database at start, so it also runs against existing data.

Same seed, same clock, fresh database: same final database.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal, Protocol

log = logging.getLogger(__name__)

Dialect = Literal["postgres", "mariadb", "sqlite"]

CENTS = Decimal("0.01")
STATUS_NEXT = {
    "pending": (("paid", 0.85), ("cancelled", 0.15)),
    "paid": (("shipped", 0.92), ("cancelled", 0.08)),
    "shipped": (("completed", 1.0),),
}
OPEN_STATUSES = frozenset(STATUS_NEXT)

COUNTRIES = {
    "DE": ("Berlin", "Hamburg", "Munich", "Cologne", "Leipzig"),
    "FR": ("Paris", "Lyon", "Marseille", "Toulouse", "Lille"),
    "NL": ("Amsterdam", "Rotterdam", "Utrecht", "Eindhoven"),
    "ES": ("Madrid", "Barcelona", "Valencia", "Seville"),
    "IT": ("Rome", "Milan", "Naples", "Turin", "Bologna"),
    "PL": ("Warsaw", "Krakow", "Gdansk", "Wroclaw"),
    "US": ("New York", "Chicago", "Austin", "Seattle", "Boston"),
    "GB": ("London", "Manchester", "Leeds", "Bristol"),
}
FIRST_NAMES = (
    "Anna", "Ben", "Chiara", "David", "Elif", "Farah", "Greta", "Hugo", "Ines", "Jonas",
    "Kenji", "Lea", "Mateo", "Nora", "Omar", "Paula", "Rafael", "Sofia", "Tomas", "Yara",
)  # fmt: skip
LAST_NAMES = (
    "Novak", "Schmidt", "Rossi", "Garcia", "Dubois", "Kowalski", "Jansen", "Smith",
    "Yilmaz", "Silva", "Berg", "Moreau", "Fischer", "Costa", "Nowak", "Lindqvist",
)  # fmt: skip
CATEGORIES = ("books", "electronics", "garden", "kitchen", "toys", "sports", "fashion", "beauty", "office")
ADJECTIVES = ("Classic", "Compact", "Deluxe", "Eco", "Smart", "Pro", "Mini", "Ultra", "Vintage", "Travel")
NOUNS = ("Lamp", "Kettle", "Backpack", "Headphones", "Notebook", "Chair", "Blender", "Jacket", "Drone", "Mug")

# Weights of the operation kinds: roughly the mix of a shop's write traffic.
WEIGHTS: dict[str, float] = {
    "new_customer": 6,
    "new_product": 2,
    "new_order": 14,
    "order_status": 22,
    "customer_move": 5,
    "product_rename": 2,
    "product_recategorise": 2,
    "product_reprice": 3,
    "item_quantity": 6,
    "item_delete": 3,
    "item_move_order": 2,
    "item_change_product": 2,
    "order_reassign": 2,
    "order_delete": 2,
    "customer_delete": 1,
    "product_delete": 1,
}
#: Kinds that change exactly one row: what is left when the remaining budget is small.
SINGLE_ROW = frozenset(
    {"new_customer", "new_product", "order_status", "customer_move", "product_rename",
     "product_recategorise", "product_reprice", "order_reassign", "customer_delete", "product_delete"}
)  # fmt: skip
MAX_ITEMS = 5


@dataclass
class WorkloadStats:
    changes: int = 0
    transactions: int = 0
    elapsed_s: float = 0.0
    errors: int = 0
    #: transactions per operation kind
    ops: Counter[str] = field(default_factory=Counter)
    #: row changes per "table.insert|update|delete"
    rows: Counter[str] = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        return self.changes / self.elapsed_s if self.elapsed_s > 0 else 0.0


class IdPool:
    """A set of ids (any hashable: an int, a tuple of key values) with O(1) add, remove and seeded
    random choice."""

    def __init__(self) -> None:
        self._ids: list[Any] = []
        self._pos: dict[Hashable, int] = {}

    def add(self, id_: Hashable) -> None:
        if id_ not in self._pos:
            self._pos[id_] = len(self._ids)
            self._ids.append(id_)

    def discard(self, id_: Hashable) -> None:
        pos = self._pos.pop(id_, None)
        if pos is None:
            return
        last = self._ids.pop()
        if last != id_:
            self._ids[pos] = last
            self._pos[last] = pos

    def choice(self, rng: random.Random) -> Any:
        return self._ids[rng.randrange(len(self._ids))] if self._ids else None

    def __contains__(self, id_: object) -> bool:
        return id_ in self._pos

    def __len__(self) -> int:
        return len(self._ids)


class Pacer:
    """Token bucket: ``spend(n)`` returns once n changes fit into the target rate.

    The bucket holds at most a tenth of a second of tokens, so a stall (a slow commit, a
    lock wait) is followed by a short catch-up burst and not by a long one.
    """

    def __init__(
        self, rate: float, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self.capacity = max(rate * 0.1, 1.0)
        self.tokens = 0.0
        self.last = clock()

    def spend(self, n: int) -> None:
        if self.rate <= 0:
            return
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate) - n
        self.last = now
        if self.tokens < 0:
            self.sleep(-self.tokens / self.rate)


class _Sql:
    """The per-dialect differences: placeholders, values, transactions, new ids."""

    def __init__(self, conn: Any, dialect: Dialect) -> None:
        self.conn = conn
        self.dialect = dialect
        self.mark = "?" if dialect == "sqlite" else "%s"

    def q(self, sql: str) -> str:
        return sql.replace("%s", self.mark) if self.mark != "%s" else sql

    def value(self, v: Any) -> Any:
        # SQLite stores decimals and timestamps as exact TEXT; the drivers adapt the others.
        if self.dialect == "sqlite":
            if isinstance(v, Decimal):
                return format(v, "f")
            if isinstance(v, datetime):
                return v.strftime("%Y-%m-%d %H:%M:%S")
            if isinstance(v, date):
                return v.isoformat()
        return v

    def begin(self) -> None:
        # psycopg and PyMySQL open a transaction implicitly; SQLite takes the write lock up
        # front so the transaction waits (busy_timeout) instead of failing on upgrade.
        if self.dialect == "sqlite":
            self.conn.execute("BEGIN IMMEDIATE")

    def execute(self, sql: str, *params: Any) -> Any:
        cur = self.conn.cursor()
        cur.execute(self.q(sql), tuple(self.value(p) for p in params))
        return cur

    def rowcount(self, sql: str, *params: Any) -> int:
        cur = self.execute(sql, *params)
        n = cur.rowcount
        cur.close()
        return n

    def fetchall(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        cur = self.execute(sql, *params)
        rows = cur.fetchall()
        cur.close()
        return rows

    def insert(self, table: str, **values: Any) -> int:
        cols = ", ".join(values)
        marks = ", ".join(["%s"] * len(values))
        sql = f"INSERT INTO {table} ({cols}) VALUES ({marks})"
        if self.dialect == "postgres":
            cur = self.execute(sql + " RETURNING id", *values.values())
            new_id = cur.fetchone()[0]
        else:
            cur = self.execute(sql, *values.values())
            new_id = cur.lastrowid
        cur.close()
        return int(new_id)


def _dec(v: Any) -> Decimal:
    return Decimal(str(v))


def utc_now() -> datetime:
    """Whole seconds, naive UTC: what TIMESTAMP(0) / DATETIME / the SQLite TEXT hold."""
    return datetime.now(UTC).replace(microsecond=0, tzinfo=None)


class Workload:
    def __init__(self, conn: Any, dialect: Dialect, rng: random.Random, now: Callable[[], datetime]) -> None:
        self.db = _Sql(conn, dialect)
        self.conn = conn
        self.rng = rng
        self.now = now
        self.kinds = list(WEIGHTS)
        self.weights = list(WEIGHTS.values())
        self.small_kinds = [k for k in self.kinds if k in SINGLE_ROW]
        self.small_weights = [WEIGHTS[k] for k in self.small_kinds]
        self._rows: Counter[str] = Counter()
        self._reset()

    def _reset(self) -> None:
        self.customers = IdPool()
        self.products = IdPool()
        self.prices: dict[int, Decimal] = {}
        self.orders = IdPool()
        self.open_orders = IdPool()
        self.pending_orders = IdPool()
        self.status: dict[int, str] = {}
        self.order_customer: dict[int, int] = {}
        self.items: dict[int, tuple[int, int, int]] = {}  # item -> (order, product, quantity)
        self.order_items: dict[int, set[int]] = {}

    # --- local model ------------------------------------------------------------------

    def load(self) -> None:
        """(Re)read the live ids from the database."""
        self._reset()
        for (cid,) in self.db.fetchall("SELECT id FROM customers ORDER BY id"):
            self.customers.add(cid)
        for pid, price in self.db.fetchall("SELECT id, price FROM products ORDER BY id"):
            self._add_product(pid, _dec(price))
        for oid, cid, status in self.db.fetchall("SELECT id, customer_id, status FROM orders ORDER BY id"):
            self._add_order(oid, cid, status)
        for iid, oid, pid, qty in self.db.fetchall(
            "SELECT id, order_id, product_id, quantity FROM order_items ORDER BY id"
        ):
            self._add_item(iid, oid, pid, qty)
        self.conn.commit()

    def _add_product(self, pid: int, price: Decimal) -> None:
        self.products.add(pid)
        self.prices[pid] = price

    def _add_order(self, oid: int, cid: int, status: str) -> None:
        self.orders.add(oid)
        self.order_customer[oid] = cid
        self.order_items.setdefault(oid, set())
        self._set_status(oid, status)

    def _set_status(self, oid: int, status: str) -> None:
        self.status[oid] = status
        (self.open_orders.add if status in OPEN_STATUSES else self.open_orders.discard)(oid)
        (self.pending_orders.add if status == "pending" else self.pending_orders.discard)(oid)

    def _drop_order(self, oid: int) -> None:
        for iid in self.order_items.pop(oid, set()):
            self.items.pop(iid, None)
        for pool in (self.orders, self.open_orders, self.pending_orders):
            pool.discard(oid)
        self.status.pop(oid, None)
        self.order_customer.pop(oid, None)

    def _add_item(self, iid: int, oid: int, pid: int, qty: int) -> None:
        self.items[iid] = (oid, pid, qty)
        self.order_items.setdefault(oid, set()).add(iid)

    def _pick_pending_item(self) -> tuple[int, int, int, int] | None:
        """A random item of a random pending order: (item, order, product, quantity)."""
        oid = self.pending_orders.choice(self.rng)
        if oid is None or not self.order_items.get(oid):
            return None
        iid = self.rng.choice(sorted(self.order_items[oid]))
        return (iid, *self.items[iid])

    # --- one transaction --------------------------------------------------------------

    def step(self, budget: int) -> tuple[str, Counter[str]]:
        """Run one operation of at most ``budget`` row changes; return its kind and its
        row changes per "table.op" (empty when the operation found nothing to do)."""
        if budget < 2 * MAX_ITEMS + 2:
            kind = self.rng.choices(self.small_kinds, self.small_weights)[0]
        else:
            kind = self.rng.choices(self.kinds, self.weights)[0]
        self._rows = Counter()
        self.db.begin()
        try:
            getattr(self, f"_op_{kind}")(budget)
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise
        return kind, self._rows

    def _changed(self, table: str, op: str, n: int = 1) -> None:
        if n > 0:
            self._rows[f"{table}.{op}"] += n

    def _insert(self, table: str, **values: Any) -> int:
        new_id = self.db.insert(table, **values)
        self._changed(table, "insert")
        return new_id

    def _update(self, table: str, sql: str, *params: Any) -> int:
        n = self.db.rowcount(sql, *params)
        self._changed(table, "update", n)
        return n

    def _delete(self, table: str, sql: str, *params: Any) -> int:
        n = self.db.rowcount(sql, *params)
        self._changed(table, "delete", n)
        return n

    def _refresh_total(self, oid: int) -> None:
        items = self.db.fetchall("SELECT quantity, price FROM order_items WHERE order_id = %s", oid)
        total = sum((q * _dec(p) for q, p in items), Decimal(0)).quantize(CENTS)
        self._update("orders", "UPDATE orders SET total = %s WHERE id = %s AND total <> %s", total, oid, total)

    # --- operations ---------------------------------------------------------------------

    def _op_new_customer(self, budget: int) -> None:
        first, last = self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)
        country = self.rng.choice(sorted(COUNTRIES))
        cid = self._insert(
            "customers",
            email=f"{first}.{last}.{self.rng.getrandbits(40):010x}@example.com".lower(),
            name=f"{first} {last}",
            country=country,
            city=self.rng.choice(COUNTRIES[country]),
            created_at=self.now(),
        )
        self.customers.add(cid)

    def _op_new_product(self, budget: int) -> None:
        price = self._price()
        pid = self._insert(
            "products",
            name=self._product_name(),
            category=self.rng.choice(CATEGORIES),
            price=price,
            created_at=self.now(),
        )
        self._add_product(pid, price)

    def _price(self) -> Decimal:
        return (Decimal(self.rng.randint(199, 49_999)) * CENTS).quantize(CENTS)

    def _product_name(self) -> str:
        return f"{self.rng.choice(ADJECTIVES)} {self.rng.choice(NOUNS)} {self.rng.randint(1, 999)}"

    def _op_new_order(self, budget: int) -> None:
        cid = self.customers.choice(self.rng)
        if cid is None or not self.products:
            return
        n_items = min(self.rng.choices(range(1, MAX_ITEMS + 1), (30, 30, 20, 12, 8))[0], budget - 1)
        lines = []
        for _ in range(n_items):
            pid = self.products.choice(self.rng)
            lines.append((pid, self.rng.randint(1, 5), self.prices[pid]))
        total = sum((q * p for _, q, p in lines), Decimal(0)).quantize(CENTS)
        oid = self._insert("orders", customer_id=cid, order_date=self.now(), status="pending", total=total)
        self._add_order(oid, cid, "pending")
        for pid, qty, price in lines:
            iid = self._insert("order_items", order_id=oid, product_id=pid, quantity=qty, price=price)
            self._add_item(iid, oid, pid, qty)

    def _op_order_status(self, budget: int) -> None:
        oid = self.open_orders.choice(self.rng)
        if oid is None:
            return
        old = self.status[oid]
        choices, weights = zip(*STATUS_NEXT[old], strict=True)
        new = self.rng.choices(choices, weights)[0]
        if self._update("orders", "UPDATE orders SET status = %s WHERE id = %s AND status = %s", new, oid, old):
            self._set_status(oid, new)

    def _op_customer_move(self, budget: int) -> None:
        cid = self.customers.choice(self.rng)
        if cid is None:
            return
        country = self.rng.choice(sorted(COUNTRIES))
        city = self.rng.choice(COUNTRIES[country])
        if self.rng.random() < 0.8:
            # Most moves stay in the country: the row's country decides the city list.
            rows = self.db.fetchall("SELECT country FROM customers WHERE id = %s", cid)
            if not rows:
                return
            country = rows[0][0]
            city = self.rng.choice(COUNTRIES.get(country, (city,)))
        self._update(
            "customers",
            "UPDATE customers SET country = %s, city = %s WHERE id = %s AND (country <> %s OR city <> %s)",
            country, city, cid, country, city,
        )  # fmt: skip

    def _op_product_rename(self, budget: int) -> None:
        pid = self.products.choice(self.rng)
        if pid is not None:
            name = self._product_name()
            self._update("products", "UPDATE products SET name = %s WHERE id = %s AND name <> %s", name, pid, name)

    def _op_product_recategorise(self, budget: int) -> None:
        pid = self.products.choice(self.rng)
        if pid is not None:
            cat = self.rng.choice(CATEGORIES)
            self._update(
                "products", "UPDATE products SET category = %s WHERE id = %s AND category <> %s", cat, pid, cat
            )

    def _op_product_reprice(self, budget: int) -> None:
        pid = self.products.choice(self.rng)
        if pid is None:
            return
        factor = Decimal(self.rng.choice((80, 90, 95, 105, 110, 120))) / 100
        price = max((self.prices[pid] * factor).quantize(CENTS), CENTS)
        if self._update("products", "UPDATE products SET price = %s WHERE id = %s AND price <> %s", price, pid, price):
            self.prices[pid] = price

    def _op_item_quantity(self, budget: int) -> None:
        picked = self._pick_pending_item()
        if picked is None:
            return
        iid, oid, pid, qty = picked
        new = self.rng.choice([q for q in range(1, 6) if q != qty])
        if self._update("order_items", "UPDATE order_items SET quantity = %s WHERE id = %s", new, iid):
            self.items[iid] = (oid, pid, new)
            self._refresh_total(oid)

    def _op_item_delete(self, budget: int) -> None:
        picked = self._pick_pending_item()
        # An order keeps at least one item; emptying it is what order_delete is for.
        if picked is None or len(self.order_items[picked[1]]) < 2:
            return
        iid, oid, _, _ = picked
        if self._delete("order_items", "DELETE FROM order_items WHERE id = %s", iid):
            del self.items[iid]
            self.order_items[oid].discard(iid)
            self._refresh_total(oid)

    def _op_item_move_order(self, budget: int) -> None:
        picked = self._pick_pending_item()
        target = self.pending_orders.choice(self.rng)
        if picked is None or target is None or target == picked[1] or len(self.order_items[picked[1]]) < 2:
            return
        iid, oid, pid, qty = picked
        if self._update("order_items", "UPDATE order_items SET order_id = %s WHERE id = %s", target, iid):
            self.order_items[oid].discard(iid)
            self._add_item(iid, target, pid, qty)
            self._refresh_total(oid)
            self._refresh_total(target)

    def _op_item_change_product(self, budget: int) -> None:
        picked = self._pick_pending_item()
        new_pid = self.products.choice(self.rng)
        if picked is None or new_pid is None or new_pid == picked[2]:
            return
        iid, oid, _, qty = picked
        price = self.prices[new_pid]
        if self._update(
            "order_items", "UPDATE order_items SET product_id = %s, price = %s WHERE id = %s", new_pid, price, iid
        ):
            self.items[iid] = (oid, new_pid, qty)
            self._refresh_total(oid)

    def _op_order_reassign(self, budget: int) -> None:
        oid = self.orders.choice(self.rng)
        cid = self.customers.choice(self.rng)
        if oid is None or cid is None or cid == self.order_customer[oid]:
            return
        if self._update("orders", "UPDATE orders SET customer_id = %s WHERE id = %s", cid, oid):
            self.order_customer[oid] = cid

    def _op_order_delete(self, budget: int) -> None:
        oid = self.orders.choice(self.rng)
        if oid is None or len(self.order_items[oid]) + 1 > budget:
            return
        self._delete("order_items", "DELETE FROM order_items WHERE order_id = %s", oid)
        self._delete("orders", "DELETE FROM orders WHERE id = %s", oid)
        self._drop_order(oid)

    def _op_customer_delete(self, budget: int) -> None:
        for _ in range(5):
            cid = self.customers.choice(self.rng)
            if cid is None:
                return
            if not self.db.fetchall("SELECT 1 FROM orders WHERE customer_id = %s LIMIT 1", cid):
                self._delete("customers", "DELETE FROM customers WHERE id = %s", cid)
                self.customers.discard(cid)
                return

    def _op_product_delete(self, budget: int) -> None:
        for _ in range(5):
            pid = self.products.choice(self.rng)
            if pid is None:
                return
            if not self.db.fetchall("SELECT 1 FROM order_items WHERE product_id = %s LIMIT 1", pid):
                self._delete("products", "DELETE FROM products WHERE id = %s", pid)
                self.products.discard(pid)
                del self.prices[pid]
                return


class Operations(Protocol):
    """What ``run_workload`` paces: one transaction per ``step``, the live ids (re)read by ``load``."""

    def load(self) -> None: ...

    def step(self, budget: int) -> tuple[str, Counter[str]]: ...


#: (connection, dialect, random source, clock of the written timestamps) -> the operations to run
WorkloadFactory = Callable[[Any, Dialect, random.Random, Callable[[], datetime]], Operations]


def _transient(dialect: Dialect) -> Callable[[BaseException], bool]:
    """Whether an error is one another writer on the same database can cause: a row we
    picked is gone or changed (integrity), or two transactions collided (deadlock)."""
    if dialect == "postgres":
        import psycopg

        kinds: tuple[type[BaseException], ...] = (
            psycopg.errors.IntegrityError,
            psycopg.errors.SerializationFailure,
            psycopg.errors.DeadlockDetected,
        )
        return lambda exc: isinstance(exc, kinds)
    if dialect == "mariadb":
        import pymysql

        lock_errors = (1205, 1213)  # lock wait timeout, deadlock
        return lambda exc: isinstance(exc, pymysql.err.IntegrityError) or (
            isinstance(exc, pymysql.err.OperationalError) and bool(exc.args) and exc.args[0] in lock_errors
        )
    import sqlite3

    return lambda exc: isinstance(exc, sqlite3.IntegrityError)


def run_workload(
    conn: Any,
    dialect: Dialect,
    *,
    rate: float,
    duration: float | None = None,
    changes: int | None = None,
    seed: int = 0,
    on_progress: Callable[[int, float], None] | None = None,
    now: Callable[[], datetime] = utc_now,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    max_errors: int = 100,
    workload: WorkloadFactory = Workload,
) -> WorkloadStats:
    """Run the workload on ``conn`` until ``duration`` seconds or ``changes`` row changes.

    ``rate`` is row changes per second, 0 for as fast as possible. With neither limit it
    runs until interrupted (Ctrl-C), then returns what it did. A transaction that fails
    because of another writer (a row it relied on is gone, a deadlock) is rolled back, the
    live ids are reloaded, and it counts in ``errors``; more than ``max_errors`` of them raise.

    ``on_progress(changes done, elapsed seconds)`` is called after each transaction.
    ``now`` gives the timestamps written to the database; ``clock`` and ``sleep`` measure and
    pace the run (the rate, ``duration``, the elapsed time). ``workload`` makes the operations:
    the e-commerce ``Workload``, or another generator's (``cdcapp.tools.spec_workload``).
    """
    work = workload(conn, dialect, random.Random(seed), now)
    work.load()
    transient = _transient(dialect)
    stats = WorkloadStats()
    pacer = Pacer(rate, clock, sleep)
    started = clock()
    deadline = started + duration if duration is not None else None
    try:
        while (changes is None or stats.changes < changes) and (deadline is None or clock() < deadline):
            budget = changes - stats.changes if changes is not None else 1 << 30
            try:
                kind, rows = work.step(budget)
            except Exception as exc:
                if not transient(exc):
                    raise
                stats.errors += 1
                if stats.errors > max_errors:
                    raise
                log.warning("%s: %s; reloading live ids", dialect, exc)
                work.load()
                continue
            n = sum(rows.values())
            if not n:
                continue
            stats.changes += n
            stats.transactions += 1
            stats.ops[kind] += 1
            stats.rows.update(rows)
            if on_progress is not None:
                on_progress(stats.changes, clock() - started)
            pacer.spend(n)
    except KeyboardInterrupt:
        log.info("interrupted")
    finally:
        stats.elapsed_s = clock() - started
    return stats



class BackgroundWorkload(threading.Thread):
    """The application running beside a test or a fault: the workload on its own connection, in
    a thread, until ``finish``.

    It runs in half-second rounds, a new seed each, so that the caller decides when it ends
    whatever the machine's speed; a round reloads the live ids, so it also survives a source
    that was written to by others in between.
    """

    def __init__(self, connect: Callable[[], Any], dialect: Dialect, *, rate: float, seed: int,
                 workload: WorkloadFactory = Workload) -> None:
        super().__init__(daemon=True, name=f"workload-{dialect}")
        self.connect, self.dialect, self.rate, self.seed = connect, dialect, rate, seed
        self.workload = workload
        self.changes = 0
        self.errors = 0
        self.error: BaseException | None = None
        self._stop_requested = threading.Event()

    def run(self) -> None:
        conn = self.connect()
        try:
            for round_ in itertools.count():
                if self._stop_requested.is_set():
                    break
                stats = run_workload(conn, self.dialect, rate=self.rate, duration=0.5, seed=self.seed + round_,
                                     workload=self.workload)
                self.changes += stats.changes
                self.errors += stats.errors
        except BaseException as exc:  # noqa: BLE001 - reported by finish(), in the caller's thread
            self.error = exc
        finally:
            conn.close()

    def finish(self, timeout_s: float = 60.0) -> int:
        """Stop after the round under way; the changes written, or the error the thread met."""
        self._stop_requested.set()
        self.join(timeout=timeout_s)
        if self.is_alive():
            raise RuntimeError(f"the {self.dialect} workload did not stop within {timeout_s:.0f}s")
        if self.error is not None:
            raise self.error
        return self.changes
