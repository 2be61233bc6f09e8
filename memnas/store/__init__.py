"""Where every experiment, trial and curve is kept: SQLAlchemy on SQLite or PostgreSQL."""

from memnas.store._models import SCHEMA_VERSION, TRIAL_STATUSES
from memnas.store._store import DEFAULT_URL, Store, normalize_url, utcnow

__all__ = ["DEFAULT_URL", "SCHEMA_VERSION", "TRIAL_STATUSES", "Store", "normalize_url", "utcnow"]
