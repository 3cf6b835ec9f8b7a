"""Reading finished runs back: each module imports only the ones listed before it.

criteria (beats / solves), formatting (numbers, tables, the clip label) -> runs (loading) -> plots ->
compare (tables and plots of any runs), diagnosis (symptoms and causes of one run) -> report (docs/results.md).
"""
