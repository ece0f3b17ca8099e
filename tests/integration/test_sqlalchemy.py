#!/usr/bin/python3
"""SQLAlchemy 1.4 asyncio ORM (create_async_engine("postgresql+asyncpg://"),
AsyncSession) through sqlmux: a mapped class, 200 concurrent tasks each
inserting, reading back, updating and deleting its own rows.

Session mode with the default caches; transaction mode with asyncpg's
statement cache off and SQLAlchemy's prepared statement cache off. Note:
SQLAlchemy's asyncpg dialect prepares every statement with a *named*
prepared statement (asyncpg's prepare(); names are unique per process) and
executes it in the same transaction."""

import asyncio
import random
import time

from sqlalchemy import Column, Integer, String, select, update, delete, func
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import declarative_base, sessionmaker

from harness import *

TASKS = 200
Base = declarative_base()


class Item(Base):
    __tablename__ = "sa_items"
    id = Column(Integer, primary_key=True)
    owner = Column(Integer, nullable=False, index=True)
    name = Column(String(100), nullable=False)
    qty = Column(Integer, nullable=False)


async def task(Session, t: int):
    token = f"sa{t}-{random.getrandbits(40):x}"
    async with Session() as s:
        async with s.begin():
            s.add_all([Item(owner=t, name=f"{token}/{i}", qty=i) for i in range(4)])
        await asyncio.sleep(random.random() * 0.01)
        rows = (await s.execute(select(Item).where(Item.owner == t).order_by(Item.qty))).scalars().all()
        if [(r.name, r.qty) for r in rows] != [(f"{token}/{i}", i) for i in range(4)]:
            raise TestFailure(f"task {t}: read back {[(r.name, r.qty) for r in rows]}")
        await s.commit()
        async with s.begin():
            await s.execute(update(Item).where(Item.owner == t).values(qty=Item.qty + 100))
        total = (await s.execute(select(func.sum(Item.qty)).where(Item.owner == t))).scalar_one()
        if total != sum(range(4)) + 400:
            raise TestFailure(f"task {t}: qty sum after update {total}")
        await s.commit()
        async with s.begin():
            obj = (await s.execute(select(Item).where(Item.owner == t, Item.qty == 101))).scalar_one()
            obj.name = token + "/renamed"
        async with s.begin():
            names = (await s.execute(select(Item.name).where(Item.owner == t).order_by(Item.qty))).scalars().all()
            if names[1] != token + "/renamed":
                raise TestFailure(f"task {t}: ORM update lost: {names}")
            res = await s.execute(delete(Item).where(Item.owner == t))
            if res.rowcount != 4:
                raise TestFailure(f"task {t}: deleted {res.rowcount}")
        left = (await s.execute(select(func.count()).select_from(Item).where(Item.owner == t))).scalar_one()
        if left != 0:
            raise TestFailure(f"task {t}: {left} rows left after delete")
        await s.commit()


async def run(mux, url_suffix="", connect_args=None, pool_size=20):
    engine = create_async_engine(mux.url(scheme="postgresql+asyncpg") + url_suffix, pool_size=pool_size,
                                 max_overflow=0, pool_timeout=60, connect_args=connect_args or {})
    try:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        Session = sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
        t0 = time.monotonic()
        results = await asyncio.gather(*(task(Session, t) for t in range(TASKS)), return_exceptions=True)
        errors = [(i, r) for i, r in enumerate(results) if isinstance(r, BaseException)]
        log(f"{TASKS} SQLAlchemy tasks in {time.monotonic() - t0:.1f}s, {len(errors)} failed")
        if errors:
            kinds = {}
            for i, e in errors:
                kinds.setdefault(f"{type(e).__name__}: {e}"[:300], []).append(i)
            fail(f"{len(errors)} of {TASKS} SQLAlchemy tasks failed:\n  " +
                 "\n  ".join(f"{k} (tasks {v[:5]})" for k, v in list(kinds.items())[:6]))
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)
    finally:
        await engine.dispose()


def case_orm_session_mode(pg):
    with Sqlmux(pg, mode="session", size=25) as mux:
        asyncio.run(run(mux))
        mux.assert_serving()


def case_orm_transaction_mode_no_caches(pg):
    with Sqlmux(pg, mode="transaction", size=10) as mux:
        asyncio.run(run(mux, "?prepared_statement_cache_size=0", {"statement_cache_size": 0}))
        mux.assert_serving()


if __name__ == "__main__":
    run_cases(__file__, [case_orm_session_mode, case_orm_transaction_mode_no_caches], timeout=110)
