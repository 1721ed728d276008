"""ClearCircle: a governance engine against malicious marketing in a messaging platform's friend feed.

An event goes in (`events`), signals are computed (`signals`), the policy pack decides (`policy`), actions
change account state (`enforcement`) and everything is persisted with an audit chain (`store`, `audit`).
The faces (`api`, `cli`) only call `clearcircle.pipeline`.
"""

__version__ = "0.1.0"
