"""Helpers the tests share: database copies, dataset writers, tiny configs, the weekly flow on the ML-100K
slice, live servers and a database proxy, and the recommender contract every model's tests apply.

Test modules import from here, never from one another; fixtures live in the ``conftest.py`` files."""
