"""The demo's history (``app.seed.history``), replayed in time order through the real calls.

Every report goes through the intake (``submit_report``), so reports of one problem cluster
into one ticket exactly as live ones do; staff moves go through the workflow, crew moves
through the work-order lifecycle, "me too"s through the ticket service, and between them the
worker's periodic jobs (the service-level sweep, closing undisputed fixes) run at the moments
they would have run. Each call is made at its historical time (its ``now=``, and the clock
for code that asks it), so every timeline line is dated when it happened, not when the seed
ran.
"""

from __future__ import annotations

import heapq
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.principal import Principal
from app.core import clock
from app.core.errors import Conflict
from app.core.models import check_in
from app.jurisdictions.catalog import Catalog
from app.reports.intake import Place, Submission, Submitter
from app.reports.models import LocationSource
from app.reports.service import submit_report
from app.seed.history import Action, Move, Problem, Sighting
from app.seed.progress import Progress
from app.tickets import priority, workflow
from app.tickets.models import OPEN_STATUSES
from app.tickets.models import TicketStatus as S
from app.tickets.schemas import SupportIn
from app.tickets.service import support_or_follow
from app.tickets.service_levels import sweep
from app.workorders.schemas import Step
from app.workorders.service import advance

SEED = Submitter(label="demo-seed", trusted=True, identified=True)

STEPS = {
    Move.accept: Step.accept,
    Move.en_route: Step.en_route,
    Move.on_site: Step.on_site,
    Move.done: Step.done,
}

# The worker's periodic jobs the history needs, at their moments: the service-level sweep runs
# every minute, closing undisputed fixes every hour (app/jobs/tasks.py).
_NEXT_JOBS = text(
    f"""
    SELECT (SELECT min(sla_next_at) FROM ticket
            WHERE jurisdiction_id = :j AND {check_in("status", OPEN_STATUSES)})
               AS sweep_after,
           (SELECT min(t.fixed_at + s.reopen_within) FROM ticket t
            JOIN service s ON s.id = t.service_id
            WHERE t.jurisdiction_id = :j AND t.status = 'fixed') AS close_after
    """  # noqa: S608 (formats code constants only)
)
_OTHER_TICKETS = text("SELECT EXISTS (SELECT 1 FROM ticket WHERE jurisdiction_id <> :j)")
_CREW_OF = text("SELECT crew_id FROM ticket WHERE id = :id")


@dataclass(frozen=True)
class Cast:
    """Who acts in the demo: staff, each crew, and the demo citizen."""

    staff: Principal
    crews: dict[int, Principal]
    citizen: uuid.UUID


@dataclass
class Opened:
    ticket_id: int
    reference: str
    crew: Principal | None


async def replay(
    session: AsyncSession,
    problems: list[Problem],
    *,
    jurisdiction_id: int,
    cast: Cast,
    now: datetime,
    progress: Progress | None = None,
) -> Counter[str]:
    """File and act out ``problems`` up to ``now``; returns what was done, by kind."""
    catalog = Catalog()
    done: Counter[str] = Counter()
    # The worker's jobs act on every jurisdiction: replay them only when the demo is alone
    # (otherwise the live worker records the demo's service levels from now on).
    alone = not (await session.execute(_OTHER_TICKETS, {"j": jurisdiction_id})).scalar_one()
    queue: list[tuple[datetime, int, Problem, Sighting | Action]] = []
    for problem in problems:
        items: list[Sighting | Action] = [*problem.sightings, *problem.actions]
        for item in items:
            queue.append((item.at, len(queue), problem, item))
    heapq.heapify(queue)
    tickets: dict[int, Opened | None] = {}  # problem → its ticket (None: joined another)
    worker = _Worker(session, jurisdiction_id, done) if alone else None
    filed = 0
    while queue:
        at, _, problem, item = heapq.heappop(queue)
        if worker:
            await worker.run_until(at)
            worker.stale |= isinstance(item, Sighting) or item.move == Move.done
        with clock.set_to(at):
            if isinstance(item, Sighting):
                await _file(session, catalog, problem, item, tickets, cast)
                filed += 1
                if progress and (filed % 50 == 0 or filed == progress.total):
                    progress.step(filed)
                continue
            opened = tickets.get(problem.number)
            if opened is None:
                continue  # its first report joined a neighbour's ticket: that one is acted on
            try:
                await _act(session, opened, item, cast)
            except Conflict:
                # The ticket moved otherwise (a neighbour's report reopened it): as a crew
                # would, the planned step is dropped. Checked before anything is written.
                done["skipped"] += 1
            else:
                done[item.move.value] += 1
    if worker:
        await worker.run_until(now)
    # Priorities follow reports, supporters and age (the worker refreshes them every 15 min).
    await priority.refresh(session, now)
    return done


async def _file(
    session: AsyncSession,
    catalog: Catalog,
    problem: Problem,
    sighting: Sighting,
    tickets: dict[int, Opened | None],
    cast: Cast,
) -> None:
    filed = await submit_report(
        session,
        catalog,
        Submission(
            channel=sighting.channel,
            submitter=SEED,
            service_code=problem.service,
            place=Place(sighting.lon, sighting.lat, LocationSource.device, sighting.accuracy_m),
            description=sighting.description,
            reported_at=sighting.at,
            # Received as it was made: the replay files it at its own time.
            received_at=sighting.at,
        ),
        now=sighting.at,
    )
    if problem.number in tickets:
        return
    if filed.joined:
        tickets[problem.number] = None
        return
    crew_id = (await session.execute(_CREW_OF, {"id": filed.ticket_id})).scalar_one()
    tickets[problem.number] = Opened(
        filed.ticket_id, filed.reference, cast.crews.get(crew_id) if crew_id else None
    )


async def _act(session: AsyncSession, opened: Opened, action: Action, cast: Cast) -> None:
    at = action.at
    match action.move:
        case Move.acknowledge:
            await workflow.change_status(
                session, opened.ticket_id, S.acknowledged, actor=cast.staff, now=at
            )
        case Move.accept | Move.en_route | Move.on_site | Move.done:
            if opened.crew is None:
                raise Conflict("no crew holds it")
            await advance(
                session,
                opened.reference,
                STEPS[action.move],
                actor=opened.crew,
                scheduled_for=action.scheduled_for,
                now=at,
            )
        case Move.take_back:
            if opened.crew is None:
                raise Conflict("no crew holds it")
            await workflow.assign(
                session,
                opened.ticket_id,
                None,
                actor=cast.staff,
                note="Not the council's to fix: taken off the crew's list",
                now=at,
            )
        case Move.dismiss:
            await workflow.change_status(
                session, opened.ticket_id, S.not_our_responsibility, actor=cast.staff, now=at
            )
        case Move.support | Move.follow:
            # The clock is set to ``at``: the event and any consent are dated then.
            await support_or_follow(
                session,
                opened.reference,
                SupportIn(email=action.backer),
                user_id=None if action.backer else cast.citizen,
                actor_label="anonymous" if action.backer else f"user:{cast.citizen}",
                support=action.move == Move.support,
            )


class _Worker:
    """The worker's periodic jobs, run at each moment they would have acted.

    The next moment is read again only after something that may bring it forward: a report
    (a new ticket's deadlines, a reopened one's), a fix (its reopen window), a run. A move
    that makes a moment moot (an acknowledgement, a dismissal) leaves a run with nothing
    to do, which is harmless: the real worker runs every minute whether or not it is due.
    """

    def __init__(self, session: AsyncSession, jurisdiction_id: int, done: Counter[str]) -> None:
        self.session = session
        self.jurisdiction_id = jurisdiction_id
        self.done = done
        self.stale = True
        self.sweep_at: datetime | None = None
        self.close_at: datetime | None = None

    async def run_until(self, until: datetime) -> None:
        while True:
            if self.stale:
                due = (await self.session.execute(_NEXT_JOBS, {"j": self.jurisdiction_id})).one()
                self.sweep_at = _next_tick(due.sweep_after, timedelta(minutes=1), strictly=False)
                self.close_at = _next_tick(due.close_after, timedelta(hours=1), strictly=True)
                self.stale = False
            tick = min((t for t in (self.sweep_at, self.close_at) if t is not None), default=None)
            if tick is None or tick > until:
                return
            with clock.set_to(tick):
                if tick == self.sweep_at:
                    result = await sweep(self.session, now=tick)
                    self.done["sla_events"] += result.warnings + result.breaches
                if tick == self.close_at:
                    closed = await workflow.close_undisputed_fixes(self.session, now=tick)
                    self.done["closed"] += closed
            self.stale = True


def _next_tick(after: Any, step: timedelta, *, strictly: bool) -> datetime | None:
    """The first run of a job every ``step`` at or (``strictly``) after the moment ``after``."""
    if after is None:
        return None
    moment: datetime = after
    epoch = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    steps, rest = divmod(moment - epoch, step)
    if rest or strictly:
        steps += 1
    tick: datetime = epoch + steps * step
    return tick
