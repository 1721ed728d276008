"""The merchant registry (S10): who may sell what, validated against the published code formats."""
