"""Signals: facts computed from an event and its context (text, counters, graph, registry) that rules read."""
