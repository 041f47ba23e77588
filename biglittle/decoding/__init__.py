"""Decoding: the one loop (propose -> score -> decide -> commit) and the parts plugged into it.

loop.py        decode(): the loop                 methods.py     ar, speculative, bild: the policies
drafters.py    what proposes tokens               acceptance.py  the rules that decide what survives
sampling.py    temperature / top-k / top-p        stats.py       counters and timings of one generation
"""
