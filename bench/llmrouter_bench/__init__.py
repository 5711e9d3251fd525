"""The measuring code behind `llmrouter bench` and the scripts in bench/ (not part of the runtime
package: `llmrouter bench` loads it from the checkout's bench/ folder, or from the copy a wheel
carries as data).

    measure.py    timing primitives: the llama.cpp floor, other decision paths, cold start, load
    latency.py    the latency run over models and thread counts; JSON, markdown and a PNG
    breakeven.py  routed vs direct requests through the real server, priced
"""
