"""Reproductions of the seed articles' claims and the classic long-dependency results (``make reproduce``)."""
