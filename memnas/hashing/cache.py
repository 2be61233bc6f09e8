"""EquivalenceCache: a candidate equal to one evaluated (or being evaluated) is not run again."""

from __future__ import annotations

import time
from typing import Any, Sequence

from memnas.hashing._canonical import canonical_json
from memnas.hashing._functional import functional_hash
from memnas.records import Outcome, TrialStatus, error_summary
from memnas.store import cachekinds

HIT_KINDS = ("duplicate", "canonical", "functional")
"""What a trial the cache answered shares with the trial whose result it reused
(`match_kind`), most to least: the same candidate, the same canonical form, the same
functional hash only. A hit is stored with its kind as its ``cache_kind``."""


HASH_DEFAULTS = {"train_steps": 1}
"""The cache's `functional_hash` options unless the experiment's ``hash_options`` say
otherwise: outputs after one fixed SGD step, as Unified Functional Hashing hashes
short-budget outputs. Outputs at initialisation alone merge candidates that only start
equal: in the memory space, mLSTM with a sigmoid and with an exponential forget gate
(equal at init, not after training: `memnas bench hashing` re-evaluated them apart);
one step tells them apart and keeps true equivalences (e.g. an episodic memory whose
window covers the sequence is that attention) together."""


def match_kind(candidate_json: str, sym_hash: str, source_json: str | None,
               source_sym: str | None) -> str:
    """The kind (`HIT_KINDS`) of a match between a candidate and the trial it reuses.

    ``duplicate``: the same candidate (its raw, non-canonicalised JSON, as the trials
    table stores it, equals the source's). ``canonical``: another candidate with the same
    canonical form (symbolic hash). ``functional``: the same functional hash only. The
    cache also calls ``duplicate`` a match whose candidate an earlier trial of the same
    experiment (at the same budget) proposed: what a plain symbolic dedup of the
    proposals, such as ``pg.geno.Deduping``, catches too.
    """
    if candidate_json == source_json:
        return "duplicate"
    return "canonical" if sym_hash == source_sym else "functional"


class EquivalenceCache:
    """The functional-equivalence cache (FEC) of Gillard et al. 2023, backed by the store.

    A candidate is looked up first by its canonical symbolic hash, then (only on a
    miss) by its functional hash. A match among completed evaluations under the same
    evaluator fingerprint, in any experiment of the store, is a *hit*: its result is
    reused. A match with a trial still running in this search is *attached*: it waits
    for that twin instead of running. With ``reevaluate=k`` a hash is evaluated up to
    k times before hits reuse the mean of those evaluations (UFH's answer to noise).
    Every match has a kind (`match_kind`: ``duplicate``, ``canonical`` or
    ``functional``); a hit is stored with its kind as ``cache_kind``, an attached trial
    as ``attached``: its kind follows from its row and its twin's by the same rule
    (`memnas.store.cachekinds.cache_kinds`), and an older store's hits read ``hit``.

    Args:
      store: the open store.
      fingerprint: the evaluator's fingerprint; only its results are reused.
      reevaluate: evaluations per hash before results are reused.
      hash_options: options of `functional_hash` (``probe``, ``train_steps``, ``digits``),
        over `HASH_DEFAULTS`.
    """

    def __init__(self, store: Any, fingerprint: str, reevaluate: int = 1,
                 hash_options: dict[str, Any] | None = None) -> None:
        self.store = store
        self.fingerprint = fingerprint
        self.reevaluate = reevaluate
        self.hash_options = {**HASH_DEFAULTS, **(hash_options or {})}
        self.hash_time = 0.0      # seconds of functional hashing
        self.symbolic_time = 0.0  # seconds of symbolic hashing (the driver's, counted here)
        self.hashed = 0
        self._running: dict[str, Any] = {}       # hash -> Pending being evaluated
        self._waiting: dict[int, list[Any]] = {}  # twin trial id -> attached Pendings

    @property
    def num_waiting(self) -> int:
        """Trials attached to a running twin."""
        return sum(len(v) for v in self._waiting.values())

    def functional_hash(self, candidate: Any) -> str | None:
        """The candidate's functional hash, or None where it cannot be computed."""
        if not (hasattr(candidate, "build") or "probe" in self.hash_options):
            return None
        start = time.perf_counter()
        try:
            return functional_hash(candidate, fingerprint=self.fingerprint, **self.hash_options)
        except Exception:  # a candidate that cannot even build: its evaluation will say why
            return None
        finally:
            self.hash_time += time.perf_counter() - start
            self.hashed += 1

    def lookup_many(self, items: Sequence[tuple[Any, ...]],
                    exp_id: int | None = None) -> list[tuple[str, Any, str | None, str | None]]:
        """Looks up ``(candidate, sym_hash[, budget_key[, candidate JSON]])`` items proposed
        together, in order (the JSON as the trials table stores it, where known).

        Returns one ``(kind, what, fn_hash, match)`` per item: ("hit", stored sources),
        ("attach", running twin) or ("miss", None), and the match's kind (`match_kind`;
        None for a miss): ``duplicate`` when the candidate is the source's or twin's, or,
        given the experiment ``exp_id``, one of its earlier trials' or an earlier item's
        at the same budget (what a dedup of the proposals catches). Their stored
        evaluations are read in one query per budget; among them, one holding the same
        candidate is reused first. A candidate equal to an earlier miss of the same lot
        (at the same budget) is attached to it: its ``what`` is that item's index.
        Results at one budget (``budget_key``, a multi-fidelity rung's) never answer another.
        """
        texts: list[list[str]] = [[it[3]] if len(it) > 3 and it[3] else [] for it in items]
        items = [(it[0], it[1], it[2] if len(it) > 2 else None) for it in items]
        stored: dict[str | None, dict[str, list[dict[str, Any]]]] = {}
        for bk in dict.fromkeys(bk for _, _, bk in items):
            stored[bk] = self.store.evaluations_many(
                self.fingerprint, [sym for _, sym, b in items if b == bk], bk)
        lot: dict[str, int] = {}                 # hash@budget -> index of a miss of this lot
        out: list[tuple[str, Any, str | None, str | None]] = []
        for i, (candidate, sym, bk) in enumerate(items):
            kind, what = self._match(_key(sym, bk), None, stored[bk].get(sym, []), lot,
                                     candidate, texts[i])
            fn = None
            if kind == "miss":
                fn = self.functional_hash(candidate)
                if fn:
                    kind, what = self._match(
                        _key(sym, bk), _key(fn, bk),
                        self.store.evaluations(self.fingerprint, sym, fn, bk), lot,
                        candidate, texts[i])
            match = None
            if kind == "miss":
                lot.setdefault(_key(sym, bk), i)
                if fn:
                    lot.setdefault(_key(fn, bk), i)
            else:
                if kind == "hit":
                    source = what[0]
                elif isinstance(what, int):  # an earlier miss of this lot
                    source = {"candidate": _json_of(items[what][0], texts[what]),
                              "sym_hash": items[what][1]}
                else:
                    source = what.trial
                match = match_kind(_json_of(candidate, texts[i]), sym,
                                   source.get("candidate"), source.get("sym_hash"))
            out.append((kind, what, fn, match))
        return self._proposed_before(items, texts, out, exp_id)

    def _proposed_before(self, items: list[tuple[Any, str, str | None]], texts: list[list[str]],
                         out: list[tuple[str, Any, str | None, str | None]],
                         exp_id: int | None) -> list[tuple[str, Any, str | None, str | None]]:
        """``out`` with a non-duplicate match made ``duplicate`` where the experiment's
        stored trials or an earlier item of the lot, at its budget, had its candidate."""
        late = [i for i, o in enumerate(out) if o[3] in ("canonical", "functional")]
        if not late:
            return out
        seen: dict[str | None, set[str]] = {}
        for bk in dict.fromkeys(items[i][2] for i in late):
            seen[bk] = set() if exp_id is None else cachekinds.proposed(
                self.store, exp_id, [items[i][1] for i in late if items[i][2] == bk], bk)
        for i in late:
            mine, bk = texts[i][0], items[i][2]
            if mine in seen[bk] or any(items[j][2] == bk and _json_of(items[j][0], texts[j])
                                       == mine for j in range(i)):
                out[i] = (*out[i][:3], "duplicate")
        return out

    def _match(self, sym_hash: str, fn_hash: str | None, done: list[dict[str, Any]],
               lot: dict[str, int], candidate: Any, text: list[str]) -> tuple[str, Any]:
        twin = self._running.get(sym_hash) or (self._running.get(fn_hash) if fn_hash else None)
        if twin is None:
            twin = lot.get(sym_hash, lot.get(fn_hash) if fn_hash else None)
        if len(done) >= self.reevaluate:
            mine = _json_of(candidate, text)  # the same candidate's evaluations first
            done = sorted(done, key=lambda r: r.get("candidate") != mine)
            return "hit", done[: self.reevaluate]
        if twin is not None and len(done) + 1 >= self.reevaluate:
            return "attach", twin
        return "miss", None

    def launched(self, pending: Any) -> None:
        """Notes that ``pending`` is being evaluated, so twins attach to it."""
        bk = pending.trial.get("budget_key")
        for key in (pending.trial.get("sym_hash"), pending.trial.get("fn_hash")):
            if key:
                self._running.setdefault(_key(key, bk), pending)

    def attach(self, twin: Any, pending: Any) -> None:
        """Makes ``pending`` wait for ``twin``'s result."""
        self._waiting.setdefault(twin.id, []).append(pending)

    def settled(self, pending: Any) -> list[Any]:
        """Forgets a finished evaluation; returns the trials that waited for it."""
        bk = pending.trial.get("budget_key")
        for key in (pending.trial.get("sym_hash"), pending.trial.get("fn_hash")):
            if key and self._running.get(_key(key, bk)) is pending:
                del self._running[_key(key, bk)]
        return self._waiting.pop(pending.id, [])

    @staticmethod
    def hit_outcome(sources: list[dict[str, Any]], match: str | None = None) -> Outcome:
        """The outcome of a hit: the mean metrics of the stored evaluations it reuses,
        its ``cache_kind`` the match's kind (`HIT_KINDS`; "hit" when not given)."""
        keys = set.intersection(*(set(s["metrics"]) for s in sources))
        metrics = {k: sum(s["metrics"][k] for s in sources) / len(sources) for k in sorted(keys)}
        saved = sum(s["wall_time"] or 0.0 for s in sources) / len(sources)
        return Outcome(TrialStatus.CACHED, metrics=metrics, costs=dict(sources[0]["costs"]),
                       wall_time=0.0, cached_from=sources[0]["id"], cache_kind=match or "hit",
                       saved_time=saved)

    @staticmethod
    def twin_outcome(twin: Any, outcome: Outcome) -> Outcome:
        """The outcome of a trial attached to ``twin``, which ended with ``outcome``."""
        if outcome.status != TrialStatus.COMPLETED:
            return Outcome.failed(
                f"its twin trial #{twin.trial['number']} failed: "
                f"{error_summary(outcome.error) or 'no reason given'}",
                wall_time=0.0, cached_from=twin.id, cache_kind="attached")
        return Outcome(TrialStatus.CACHED, metrics=dict(outcome.metrics),
                       costs=dict(outcome.costs), wall_time=0.0, cached_from=twin.id,
                       cache_kind="attached", saved_time=outcome.wall_time or 0.0)


def _json_of(candidate: Any, memo: list[str] | None = None) -> str:
    """A candidate's JSON as the trials table stores it (``memo`` keeps it once written)."""
    if memo:
        return memo[0]
    text = canonical_json(candidate, normalise=False)
    if memo is not None:
        memo.append(text)
    return text


def _key(hash_: str, budget_key: str | None) -> str:
    """A hash as the cache's in-memory maps key it: with the budget, where there is one."""
    return f"{hash_}@{budget_key}" if budget_key else hash_
