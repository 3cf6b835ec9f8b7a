"""Reading finished runs back: what they show, in words and numbers."""
