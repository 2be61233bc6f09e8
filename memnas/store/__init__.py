"""Where every experiment, trial and curve is kept: SQLAlchemy on SQLite or PostgreSQL."""

from memnas.store._models import TRIAL_STATUSES
from memnas.store._schema import SCHEMA_VERSION
from memnas.store._store import DEFAULT_URL, Store, normalize_url, utcnow
from memnas.store import reader, roles
from memnas.store.reader import fold_twins, readable_decisions, trials_frame

__all__ = ["DEFAULT_URL", "SCHEMA_VERSION", "TRIAL_STATUSES", "Store", "normalize_url", "utcnow",
           "fold_twins", "readable_decisions", "reader", "roles", "trials_frame"]
