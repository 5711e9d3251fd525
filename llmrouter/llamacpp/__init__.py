"""llmrouter's glue to llama.cpp (llama-cpp-python), shared by the router's decider and the `local`
provider; nothing here decides a route or calls a target.

    load.py         load_llama: one quiet Llama, threads set, an optional eval callback
    trie.py         score every allowed route from the logits in as few passes as the names allow
    taps.py         read intermediate layers' hidden states during the forward pass
    constrained.py  Outlines-constrained generation on a warm context
"""
