"""The store's migrations, one schema version each, in order of their number."""
