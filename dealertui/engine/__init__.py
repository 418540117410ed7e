"""The engine: the manager, dependency graph, operator actions, events and backoff."""
