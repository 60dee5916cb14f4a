"""Surfaces that reach people and systems outside Community ADE."""
