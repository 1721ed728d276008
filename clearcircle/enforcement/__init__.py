"""Enforcement: account state and the actions that change it (labels, reach limits, restrictions,
suspensions, bans, strikes). Pure functions over state; the pipeline persists what they return."""
