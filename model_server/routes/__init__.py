"""One router per resource: users, recommendations, predict, movies, and the service itself (system)."""
