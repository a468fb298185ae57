"""animate-portrait: make a portrait talk, blink and turn as a driving video does."""

__version__ = "0.1.0"
