"""Reading finished runs back: each module imports only the ones listed before it.

criteria (beats / solves), formatting (numbers, tables, the clip label), published (what the sources say) ->
runs (loading) -> verdicts (a claim's verdict from its criterion over seeds) -> results (a run reduced to the
numbers criteria read) -> claims (how each claim is tested) -> claims_table (the table that opens the report) ->
plots -> compare (tables and plots of any runs), diagnosis (symptoms and causes of one run) -> report
(docs/results.md).
"""
