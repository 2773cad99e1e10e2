"""A tiny in-memory OLTP database for the e-commerce spec, producing Debezium-like changes.

It is the ground truth of the pure join tests: random histories of inserts, updates, deletes and
foreign-key changes, with the join computed directly from its final tables.
"""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

CITIES = [("USA", "Boston"), ("USA", "Austin"), ("France", "Lyon"), ("Japan", "Osaka")]
CATEGORIES = ["Books", "Toys", "Garden"]
STATUSES = ["pending", "paid", "shipped", "completed", "cancelled"]
MIX = {"cust": 3, "prod": 3, "order": 4, "item": 10, "upd_cust": 2, "upd_prod": 2, "status": 3, "order_fk": 1,
       "item_fk": 2, "item_qty": 2, "del_item": 1, "del_order": 1, "del_cust": 1, "del_prod": 1}


class OltpModel:
    def __init__(self, rng: random.Random, source: str = "pg") -> None:
        self.rng = rng
        self.source = source
        self.tables: dict[str, dict[int, dict[str, Any]]] = {
            "customers": {}, "products": {}, "orders": {}, "order_items": {}}
        self.next_id = 1
        self.pos = 100
        self.changes: list[tuple[str, int, str, dict[str, Any] | None, int]] = []

    def _emit(self, table: str, op: str, row: dict[str, Any]) -> None:
        self.pos += self.rng.randint(1, 5)
        if op == "d":
            del self.tables[table][row["id"]]
        else:
            self.tables[table][row["id"]] = row
        self.changes.append((table, row["id"], op, dict(row), self.pos))

    def _new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def _pick(self, table: str) -> dict[str, Any] | None:
        rows = self.tables[table]
        return rows[self.rng.choice(list(rows))] if rows else None

    def step(self) -> None:
        r = self.rng
        kind = r.choices(list(MIX), weights=list(MIX.values()))[0]
        if kind == "cust" or not self.tables["customers"]:
            country, city = r.choice(CITIES)
            i = self._new_id()
            self._emit("customers", "c", {"id": i, "email": f"c{i}@x", "name": f"C{i}", "country": country,
                                          "city": city, "created_at": "2024-01-01 00:00:00"})
        elif kind == "prod" or not self.tables["products"]:
            i = self._new_id()
            self._emit("products", "c", {"id": i, "name": f"P{i}", "category": r.choice(CATEGORIES),
                                         "price": str(Decimal(r.randint(100, 99999)) / 100),
                                         "created_at": "2024-01-02 00:00:00"})
        elif kind == "order" or not self.tables["orders"]:
            i = self._new_id()
            self._emit("orders", "c", {"id": i, "customer_id": self._pick("customers")["id"],
                                       "order_date": f"2024-02-{r.randint(10, 28)} 10:00:00",
                                       "status": "pending", "total": "0.00"})
        elif kind == "item" or not self.tables["order_items"]:
            i = self._new_id()
            self._emit("order_items", "c", {"id": i, "order_id": self._pick("orders")["id"],
                                            "product_id": self._pick("products")["id"],
                                            "quantity": r.randint(1, 5),
                                            "price": str(Decimal(r.randint(100, 9999)) / 100)})
        elif kind == "upd_cust":
            country, city = r.choice(CITIES)
            self._emit("customers", "u", {**self._pick("customers"), "country": country, "city": city})
        elif kind == "upd_prod":
            p = self._pick("products")
            self._emit("products", "u", {**p, "name": p["name"] + "'", "category": r.choice(CATEGORIES)})
        elif kind == "status":
            self._emit("orders", "u", {**self._pick("orders"), "status": r.choice(STATUSES)})
        elif kind == "order_fk":
            self._emit("orders", "u", {**self._pick("orders"), "customer_id": self._pick("customers")["id"]})
        elif kind == "item_fk":
            item = self._pick("order_items")
            if r.random() < 0.5:
                self._emit("order_items", "u", {**item, "order_id": self._pick("orders")["id"]})
            else:
                self._emit("order_items", "u", {**item, "product_id": self._pick("products")["id"]})
        elif kind == "item_qty":
            self._emit("order_items", "u", {**self._pick("order_items"), "quantity": r.randint(1, 9)})
        elif kind == "del_item":
            self._emit("order_items", "d", self._pick("order_items"))
        elif kind == "del_order":
            order = self._pick("orders")
            for item in [x for x in self.tables["order_items"].values() if x["order_id"] == order["id"]]:
                self._emit("order_items", "d", item)
            self._emit("orders", "d", order)
        elif kind == "del_cust":
            cust = self._pick("customers")
            if not any(o["customer_id"] == cust["id"] for o in self.tables["orders"].values()):
                self._emit("customers", "d", cust)
        elif kind == "del_prod":
            prod = self._pick("products")
            if not any(i["product_id"] == prod["id"] for i in self.tables["order_items"].values()):
                self._emit("products", "d", prod)

    def expected_fact(self) -> dict[int, dict[str, Any]]:
        out = {}
        t = self.tables
        for item in t["order_items"].values():
            order = t["orders"][item["order_id"]]
            customer = t["customers"][order["customer_id"]]
            product = t["products"][item["product_id"]]
            out[item["id"]] = {
                "id": item["id"], "customer_id": order["customer_id"], "product_id": item["product_id"],
                "order_id": item["order_id"], "order_date": order["order_date"], "quantity": item["quantity"],
                "unit_price": item["price"], "order_status": order["status"],
                "customer_country": customer["country"], "customer_city": customer["city"],
                "product_category": product["category"], "product_name": product["name"],
                "revenue": str((item["quantity"] * Decimal(item["price"])).quantize(Decimal("0.01"))),
            }
        return out
