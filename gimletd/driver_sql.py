"""Statements compiled once by SQLAlchemy and run on the database driver's own cursor.

On the API's hottest path, storing a batch of pushes and checking a token, what
SQLAlchemy does around an already compiled statement (an execution context,
bind and result processing, default values) costs several times what SQLite
spends on the statement: the token lookup took 0.14 ms of CPU through
`Connection.execute`, and takes 0.066 ms here. So SQLAlchemy still writes the SQL for
each dialect, once, and `driver_cursor` runs it without the rest.

Only for statements whose parameters and columns are plain values (text,
numbers, booleans, None): nothing here applies SQLAlchemy's type processing
(JSON, DateTime or Enum columns would need it), and no statement here returns
rows it inserted.
The store (`gimletd.store`) is the only user; it turns the errors, which come
out as SQLAlchemy's own, into GimletD's as for every other statement.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.engine.interfaces import DBAPICursor
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.schema import ScalarElementColumnDefault


@dataclass(frozen=True)
class DriverStatement:
    """A statement's SQL in one dialect, and how to lay out its parameters for the driver."""

    sql: str
    #: The parameters' names in the order of their placeholders; None for named placeholders.
    order: tuple[str, ...] | None
    #: Every parameter's name: a value for any other name is a mistake, not to be dropped.
    names: frozenset[str]
    #: Values the statement fixes itself: literals in it, and the columns' scalar defaults.
    fixed: Mapping[str, Any]

    @classmethod
    def compile(
        cls, statement: ClauseElement, dialect: Dialect, keys: Sequence[str] = ()
    ) -> DriverStatement:
        """Compile `statement`; for an INSERT, `keys` are the columns each row gives.

        :raise ValueError: for a column left to a Python callable default, which
            only SQLAlchemy's execution would fill in.
        """
        # As for executemany: no RETURNING of the new rows' keys, which nobody reads here.
        compiled = cast(
            SQLCompiler,
            statement.compile(dialect=dialect, column_keys=list(keys), for_executemany=True),
        )
        if compiled.effective_returning:
            raise ValueError(f"{compiled.string!r} returns rows: run it through SQLAlchemy")
        fixed = {
            name: bind.effective_value
            for bind, name in compiled.bind_names.items()
            if not bind.required
        }
        for column in compiled.insert_prefetch:
            if column.key in keys:
                continue
            default = column.default
            if not isinstance(default, ScalarElementColumnDefault):
                raise ValueError(f"give {column.key} a value: its default is a Python callable")
            fixed[column.key] = default.arg
        order = compiled.positiontup
        names = frozenset(compiled.bind_names.values())
        return cls(compiled.string, tuple(order) if order is not None else None, names, fixed)

    def execute(self, cursor: DBAPICursor, values: Mapping[str, Any]) -> None:
        """Run the statement once with `values`, which must give every parameter it names."""
        self._check(values)
        cursor.execute(self.sql, self._parameters(values))

    def executemany(self, cursor: DBAPICursor, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run the statement for each of `rows` (all with the same keys) in one driver call."""
        if rows:
            self._check(rows[0])
        cursor.executemany(self.sql, [self._parameters(row) for row in rows])

    def _check(self, values: Mapping[str, Any]) -> None:
        """:raise ValueError: for a value the statement has no parameter for.

        Laid out by `order`, or handed to a driver that ignores extra names, it
        would be dropped without a word: a column added to the rows and not to
        the statement would never be stored.
        """
        unknown = values.keys() - self.names
        if unknown:
            raise ValueError(f"no parameter for {sorted(unknown)} in {self.sql!r}")

    def _parameters(self, values: Mapping[str, Any]) -> Any:
        merged = {**self.fixed, **values}
        if self.order is None:
            return merged
        return tuple(merged[name] for name in self.order)


@contextlib.contextmanager
def driver_cursor(engine: Engine) -> Iterator[DBAPICursor]:
    """A driver cursor on a pooled connection; its transaction commits when the block ends.

    Errors come out as SQLAlchemy's exceptions, as from `Connection.execute`,
    and a connection the driver reports lost is dropped from the pool rather
    than handed to the next caller. The pool rolls back what was not committed.
    """
    dialect = engine.dialect
    driver_error: Any = dialect.loaded_dbapi.Error  # the driver module's base class
    try:
        connection = engine.raw_connection()  # the pool's connect errors are the driver's own
    except driver_error as exc:
        raise DBAPIError.instance(None, None, exc, driver_error) from exc
    cursor: DBAPICursor | None = None
    try:
        cursor = connection.cursor()
        yield cursor
        connection.commit()
    except driver_error as exc:
        lost = dialect.is_disconnect(exc, connection.dbapi_connection, cursor)
        if lost:
            connection.invalidate(exc)
        raise DBAPIError.instance(
            None, None, exc, driver_error, connection_invalidated=lost
        ) from exc
    except Exception:
        raise  # the pool rolls the transaction back when the connection returns
    except BaseException:
        # Interrupted mid-statement (a greenlet killed, Ctrl-C): the connection's state is
        # unknown, so it is closed rather than reused, as SQLAlchemy's own Connection does.
        connection.invalidate()
        raise
    finally:
        if cursor is not None:
            with contextlib.suppress(Exception):  # a lost connection's cursor may not close
                cursor.close()
        connection.close()
