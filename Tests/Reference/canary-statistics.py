# Computes, once and by hand, the reference values hard-coded in
# Tests/MeridianTests/Analysis/CanaryStatisticsTests.swift (no test runs this file).
from scipy import stats
from statsmodels.stats.proportion import proportions_ztest

def mw(x, y):
    r = stats.mannwhitneyu(x, y, alternative='greater', use_continuity=True, method='asymptotic')
    return r.statistic, r.pvalue

x = [12, 15, 15, 20, 22, 30, 31, 31, 40]
y = [10, 11, 15, 18, 20, 20, 25]
print("mw small ties", repr(mw(x, y)))
print("mw reversed", repr(mw(y, x)))
a = [i * 7 % 23 + 100 for i in range(40)]
b = [i * 5 % 19 + 95 for i in range(60)]
print("a", a); print("b", b)
print("mw mod", repr(mw(a, b)))
print("fisher 3/50 vs 1/450", repr(stats.fisher_exact([[3, 47], [1, 449]], alternative='greater').pvalue))
print("fisher 13/250 vs 5/2250", repr(stats.fisher_exact([[13, 237], [5, 2245]], alternative='greater').pvalue))
print("fisher 0/50 vs 4/450", repr(stats.fisher_exact([[0, 50], [4, 446]], alternative='greater').pvalue))
print("fisher 2/20 vs 2/20", repr(stats.fisher_exact([[2, 18], [2, 18]], alternative='greater').pvalue))
print("binom P(X>=3|50,.01)", repr(stats.binom.sf(2, 50, 0.01)))
print("binom P(X>=20|1000,.01)", repr(stats.binom.sf(19, 1000, 0.01)))
print("binom P(X>=1|10,.2)", repr(stats.binom.sf(0, 10, 0.2)))
print("z 30/500 vs 40/2000", repr(proportions_ztest([30, 40], [500, 2000], alternative='larger')))
print("z 10/400 vs 40/1600", repr(proportions_ztest([10, 40], [400, 1600], alternative='larger')))
print("norm sf 1.96", repr(stats.norm.sf(1.96)), "sf 5", repr(stats.norm.sf(5.0)), "sf -1", repr(stats.norm.sf(-1.0)))
import numpy as np
for n in (1, 7, 50, 100, 101, 200):
    v = list(range(1, n + 1))
    print("nearest rank n", n, "p50", np.percentile(v, 50, method='inverted_cdf'), "p99", np.percentile(v, 99, method='inverted_cdf'))
