"""Policy packs: rule files, the condition language and their evaluation."""
