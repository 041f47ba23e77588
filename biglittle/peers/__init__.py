"""Other engines to compare with, installed on request: llama.cpp built from its source package on PyPI.

llamacpp_build.py   `biglittle peers build` / `make peers`: download, choose the CPU's instruction sets, build, check
llamacpp_server.py  one llama-server per decoding mode: command lines, start and stop, a greedy request, its timings
"""
