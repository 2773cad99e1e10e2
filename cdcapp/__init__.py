"""cdcapp: change-data-capture from OLTP databases into ClickHouse, joined by Faust."""

__version__ = "0.1.0"
