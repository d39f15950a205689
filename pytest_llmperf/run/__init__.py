"""One benchmark run: a Workload's prompts -> load generator -> per-request records -> RunResult.

``workload`` (what to send and when), ``loadgen`` (sending it on the client's clock),
``metrics`` (records and the run summary), ``bench`` (one run end to end, with ``memory`` and
``gpu`` sampling alongside). No pytest here.
"""
