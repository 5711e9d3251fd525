"""Routing quality: measure a router on labelled data (`llmrouter eval`) and tune it (`llmrouter tune`).

    evaluate.py  records, metrics, honest splits (stratified, grouped by source), reports
    plots.py     the report's PNG plots (matplotlib, from the `tune` extra)
    specs.py     what tune chooses among: a Spec (mode, head members, C, threshold), the candidates
    observed.py  the rows tune fits on: requests observed by the router model (cached), examples
    tune.py      choose the prompt, mode, head and threshold by cross-validation; fit; write
    shift.py     calibration on grouped folds (sources, or clusters), and the OOD strength
    cascade.py   the cheap first stage: its threshold, its two temperatures and fit
    probes.py    far-out-of-distribution requests (random tokens, blobs, logs...) for checking
    claims.py    the content view's claim detector, fitted on the package's own lines
    outcomes.py, outcome_tune.py   records with per-target outcomes: the quality-vs-cost curve,
                 and a router that maximises quality minus lambda * cost

Fitting needs scikit-learn and scipy, plots matplotlib: `pip install 'llmrouter[tune]'`.
"""
