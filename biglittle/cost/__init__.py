"""What things cost and what that implies: the analysis, measured cost profiles, and the choices made from them.

theory.py           expected tokens per iteration, speedup, best gamma (Leviathan et al. 2023, section 3)
profile.py          T(k)/T(1) and c of a pair on this machine, measured once and kept on disk
gamma.py            the cost-aware gamma chosen before every round
bild_thresholds.py  BiLD's thresholds chosen from measurement: expected cost, selection rule, stored choice
prediction.py       one generation's measured speedup over `ar` next to the theory's prediction
"""
