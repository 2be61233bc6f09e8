"""The store's Alembic migrations: ``env.py`` and one file per schema version in ``versions/``.

memnas runs them itself (see `memnas.store._schema`): opening an older store for
writing upgrades it to the newest revision. To change the schema:

1. change the models in ``memnas/store/_models.py`` (new stores are made from them);
2. add the revision ``NNNN_what`` (NNNN: the new schema version), e.g. with
   ``alembic -c memnas/store/migrations/alembic.ini revision --rev-id NNNN_what -m "..."``,
   whose ``upgrade()`` brings a store of the previous version to the models and sets
   ``memnas_version.schema_version`` to NNNN, and whose ``downgrade()`` undoes it;
3. append the revision to ``REVISIONS`` in ``memnas/store/_schema.py``.

``tests/store/test_migrations.py`` checks that an upgraded store matches the models.
``alembic -c memnas/store/migrations/alembic.ini -x url=URL upgrade head`` (``current``,
``history``, ``--sql``) runs Alembic's own commands on a store.
"""
