"""Routing quality: measure a router on labelled data (`llmrouter eval`) and tune it (`llmrouter tune`).

    evaluate.py  records, metrics, honest splits (stratified, grouped by source), reports
    plots.py     the report's PNG plots (matplotlib, from the `tune` extra)
    tune.py      choose the prompt, mode, head and threshold by cross-validation; fit; write

Fitting needs scikit-learn and scipy, plots matplotlib: `pip install 'llmrouter[tune]'`.
"""
