"""The REST API over the published recommendation lists and the champion model (``movierec serve``).

``app.create_app`` wires it: ``routes`` (one router per resource), ``schemas`` (bodies and their bounds),
``champion`` (loading and swapping the model), ``db`` and ``lists`` (read-only database access, list answers
kept per published batch), ``scoring`` (new movies, batched off the event loop), ``metrics``, ``errors``.
"""
