"""Which trial a search runs next: requeued trials, then new proposals drafted and stored.

The part of `memnas.runner.state.SearchState` that turns the algorithm's proposals into
stored trials: each is decoded, hashed, given its rung (multi-fidelity) and checked
against the constraints by its costs known before training; a lot of them is looked up
in the equivalence cache in one query and stored in one transaction.
"""

from __future__ import annotations

import time
from typing import Any

import pyglove as pg

from memnas.constraints import violation
from memnas.hashing import EquivalenceCache, canonical_json, symbolic_hash
from memnas.records import Outcome, TrialStatus
from memnas.runner._records import dna_from_json, trial_seed
from memnas.runner.contract import Draft, Pending, budget_key, new_trial_row
from memnas.store import utcnow


class Drafting:
    """Mixin of `SearchState` (which sets every attribute used here)."""

    # -- which trial next ---------------------------------------------------------------
    @property
    def finished(self) -> int:
        """Trials of the experiment that are finished (completed, failed or cached)."""
        return self.tally.finished

    @property
    def trials_left(self) -> int:
        """Trials still to launch: wanted less finished, in flight and waiting for a twin;
        none once ``max_cost`` is spent or promised to trials in flight."""
        if self.max_cost is not None and self.cost_committed >= self.max_cost:
            return 0
        return self.max_trials - self.finished - len(self.in_flight) - self.num_waiting

    @property
    def cost_committed(self) -> float:
        """Budget spent by finished trials plus that expected of the trials in flight."""
        return self.tally.spent + sum(p.rung.cost for p in self.in_flight.values() if p.rung)

    def next_trial(self) -> Pending | None:
        """The next trial to launch, now counted in flight; None when there is none now.

        A trial left unfinished (by a previous driver or a dead worker) comes first,
        then a new proposal; proposals the equivalence cache answers are stored on the
        way. None when ``max_trials`` are finished, in flight or waiting, or when the
        algorithm is exhausted (or waits for a trial in flight: ask again later).
        """
        found = self.next_trials(1)
        return found[0] if found else None

    def next_trials(self, k: int) -> list[Pending]:
        """Up to ``k`` trials to launch, as `next_trial` picks them, now counted in flight.

        New proposals are drafted together: the equivalence cache looks them up in one
        query and they are stored in one transaction (a driver running batches of
        millisecond trials spends most of its time on these round trips otherwise).
        """
        out: list[Pending] = []
        while len(out) < k and self.trials_left > 0:
            if self._queue:
                pending = self._requeue(self._queue.pop(0))
                if pending is not None:         # else out of attempts: stored as failed
                    self.in_flight[pending.id] = pending
                    out.append(pending)
                continue
            if self._exhausted:
                break
            drafts, stopped = self._draft(min(k - len(out), self.trials_left))
            if drafts:
                out.extend(self._store_drafts(drafts))
            if stopped:  # exhausted, unless it waits for a trial in flight (ask again later)
                self._exhausted = not (self.in_flight and self.hooks.waiting)
                break
        return out

    def _draft(self, n: int) -> tuple[list[Draft], bool]:
        """Up to ``n`` proposals, decoded and hashed, not yet stored, and whether the
        algorithm raised StopIteration. An algorithm with an input artifact for a
        proposal gets it stored before it proposes again."""
        drafts: list[Draft] = []
        while len(drafts) < n:
            try:
                dna = self.algorithm.propose()
            except StopIteration:
                return drafts, True
            self._calls += 1
            candidate = self.decoder(dna)
            data = pg.to_json(candidate)  # once, for the stored JSON and the hash
            start = time.perf_counter()
            sym = symbolic_hash(candidate, data)
            if self.cache:
                self.cache.symbolic_time += time.perf_counter() - start
            draft = Draft(dna, candidate, sym, self.hooks.artifact_for(dna),
                          text=canonical_json(candidate, normalise=False, data=data))
            draft.rung = self.hooks.rung_of(dna)
            draft.budget = {**self.exp.budget, **(draft.rung.budget if draft.rung else {})}
            if self.exp.constraints and draft.payload is None:
                draft.costs = self.cheap_costs(dna)
                draft.violation = violation(draft.costs, self.exp.constraints)
            drafts.append(draft)
            if draft.payload is not None:
                break
        return drafts, False

    def _store_drafts(self, drafts: list[Draft]) -> list[Pending]:
        """Stores drafts in one transaction; returns those to launch (in flight now).

        A draft the equivalence cache knows is finished at once (a hit) or attached to
        its running twin, which may be an earlier draft of the same lot; one with an
        input artifact bypasses the cache.
        """
        plain = [d for d in drafts if d.payload is None and not d.violation]
        found = iter(self.cache.lookup_many([(d.candidate, d.sym, budget_key(d.budget), d.text)
                                             for d in plain], self.exp_id)
                     if self.cache else [])
        rows, kinds, matches = [], [], []
        now = utcnow()
        for d in drafts:
            match = None
            if d.violation:
                kind, twin, fn = "infeasible", None, None
            elif self.cache and d.payload is None:
                kind, twin, fn, match = next(found)
            else:
                kind, twin, fn = "miss", None, None
            matches.append(match)  # a hit is stored with its kind (duplicate, canonical, ...)
            parent = self._trial_of.get(id(d.rung.continues)) \
                if d.rung and d.rung.continues is not None else None
            rows.append(new_trial_row(d, self.decoder.decisions(d.dna), kind, fn, now, parent))
            kinds.append((kind, twin))
        base = self.exp.seed

        def derive(i: int, number: int, ids: list[int]) -> dict[str, Any]:
            kind, twin = kinds[i]
            extra = {"seed": trial_seed(base, number)}
            if kind == "attach":  # a twin in flight, or an earlier draft of this lot
                extra["cached_from"] = ids[twin] if isinstance(twin, int) else twin.id
            return extra

        stored = self.store.add_trials(self.exp_id, rows, derive=derive,
                                       input_artifact=drafts[-1].payload)
        pendings = []
        for d, fields, (trial_id, number, extra) in zip(drafts, rows, stored):
            pendings.append(Pending({**fields, **extra, "id": trial_id, "number": number},
                                    d.dna, d.candidate, artifact=d.payload,
                                    marked_running=fields["status"] == TrialStatus.RUNNING,
                                    rung=d.rung))
            self._remember(trial_id, d.dna)
        launch, hits = [], []
        for p, d, (kind, twin), match in zip(pendings, drafts, kinds, matches):
            if kind == "infeasible":  # stored finished; told to the algorithm in order
                p.launch = False
                hits.append((p, Outcome(TrialStatus.INFEASIBLE, costs=dict(d.costs or {}),
                                        error=p.trial.get("error"))))
            elif kind == "hit":
                p.launch = False
                hits.append((p, EquivalenceCache.hit_outcome(twin, match)))
            elif kind == "attach":
                p.launch = False
                self.cache.attach(pendings[twin] if isinstance(twin, int) else twin, p)
            else:
                if self.cache and p.artifact is None:
                    self.cache.launched(p)
                self.in_flight[p.id] = p
                launch.append(p)
        self.finish_many(hits)
        return launch

    def _requeue(self, trial: dict[str, Any]) -> Pending | None:
        """A stored trial made ready to run again, or None if it used up its attempts."""
        if trial["attempt"] >= self.exp.max_attempts:
            self.finish(trial, Outcome.failed(
                f"gave up after {trial['attempt']} attempts: "
                f"{trial.get('error') or 'its run was interrupted'}"))
            return None
        trial = {**trial, "attempt": trial["attempt"] + 1, "cached_from": None, "cache_kind": None}
        self.store.clear_curve(trial["id"])
        self.store.update_trial(trial["id"], cached_from=None, cache_kind=None)
        dna = self._dna_of.get(trial["id"])
        if dna is None:
            dna = dna_from_json(trial["dna"], self.spec)
            self._remember(trial["id"], dna)
        pending = Pending(trial, dna, self.decoder(dna),
                          artifact=self.store.load_artifact(trial["id"], "input"),
                          rung=self.hooks.rung_of(dna))
        if self.cache and pending.artifact is None:
            self.cache.launched(pending)
        return pending

    @property
    def num_waiting(self) -> int:
        """Trials waiting for a running twin's result."""
        return self.cache.num_waiting if self.cache else 0
