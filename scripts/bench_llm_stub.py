#!/usr/bin/env python3
"""The LLM stand-in (tests/llm_stub.py) as `make bench` runs it: the same server, except that
it keeps only the last 1,000 requests for GET /_stub/requests instead of all of them.

Over a bench run the stand-in answers some 50,000 requests. Kept in full, they make Python's
full garbage collections walk hundreds of thousands of objects, which stalls the stand-in for
up to ~70 ms at a time, and those stalls land in whichever scenario happens to be running.

Usage: bench_llm_stub.py [--port N] [--port-file PATH]
"""
import collections
import importlib.util
import pathlib

path = pathlib.Path(__file__).resolve().parent.parent / "tests" / "llm_stub.py"
spec = importlib.util.spec_from_file_location("llm_stub", path)
stub = importlib.util.module_from_spec(spec)
spec.loader.exec_module(stub)
stub.REQUESTS = collections.deque(maxlen=1000)

if __name__ == "__main__":
    stub.main()
