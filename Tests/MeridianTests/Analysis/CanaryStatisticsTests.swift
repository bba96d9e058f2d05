import Foundation
import Testing
@testable import MeridianPlanning

/// Every reference value below was computed once with SciPy 1.x and
/// statsmodels (Tests/Reference/canary-statistics.py makes the calls; run it by hand with `pip install scipy statsmodels`);
/// the tests need neither.
@Suite struct CanaryStatisticsTests {
    static func close(_ a: Double, _ b: Double, relative: Double = 1e-9) -> Bool {
        abs(a - b) <= relative * max(abs(a), abs(b), 1e-300)
    }

    @Test func normalTail() {
        // scipy.stats.norm.sf(1.96), sf(5.0), sf(-1.0)
        #expect(Self.close(CanaryStatistics.upperNormalTail(1.96), 0.024997895148220435))
        #expect(Self.close(CanaryStatistics.upperNormalTail(5.0), 2.866515718791933e-07))
        #expect(Self.close(CanaryStatistics.upperNormalTail(-1.0), 0.8413447460685429))
    }

    @Test func mannWhitneyWithTiesMatchesSciPy() {
        // mannwhitneyu(x, y, alternative='greater', use_continuity=True, method='asymptotic')
        let x = [12, 15, 15, 20, 22, 30, 31, 31, 40]
        let y = [10, 11, 15, 18, 20, 20, 25]
        let forward = CanaryStatistics.mannWhitney(x, y)
        #expect(forward.u == 46)
        #expect(Self.close(forward.pValue, 0.06787285697206438))
        let backward = CanaryStatistics.mannWhitney(y, x)
        #expect(backward.u == 17) // 9 · 7 − 46
        #expect(Self.close(backward.pValue, 0.9450209088702722))
        let a = (0..<40).map { $0 * 7 % 23 + 100 }
        let b = (0..<60).map { $0 * 5 % 19 + 95 }
        let many = CanaryStatistics.mannWhitney(a, b)
        #expect(many.u == 1886)
        #expect(Self.close(many.pValue, 6.911085426795425e-07, relative: 1e-7))
    }

    @Test func mannWhitneyWithoutEvidence() {
        #expect(CanaryStatistics.mannWhitney([5, 5, 5], [5, 5]).pValue == 1)
        #expect(CanaryStatistics.mannWhitney([], [1, 2]).pValue == 1)
        // Hand count: 3 > 1, 3 > 2, 2 > 1, 2 = 2 (one half): U = 3.5 of 4 pairs.
        #expect(CanaryStatistics.mannWhitney([2, 3], [1, 2]).u == 3.5)
    }

    @Test func fisherExactMatchesSciPy() {
        // fisher_exact([[x1, n1 - x1], [x2, n2 - x2]], alternative='greater').pvalue
        #expect(Self.close(CanaryStatistics.fisherExact(3, 50, 1, 450), 0.003517369032992168))
        #expect(Self.close(CanaryStatistics.fisherExact(13, 250, 5, 2250), 4.0504335475916257e-10, relative: 1e-7))
        #expect(CanaryStatistics.fisherExact(0, 50, 4, 450) == 1)
        #expect(Self.close(CanaryStatistics.fisherExact(2, 20, 2, 20), 0.6975051975051975))
        #expect(CanaryStatistics.fisherExact(0, 20, 0, 200) == 1)
    }

    @Test func binomialTailMatchesSciPy() {
        // binom.sf(k - 1, n, p)
        #expect(Self.close(CanaryStatistics.binomialUpperTail(3, 50, 0.01), 0.013817270830600381))
        #expect(Self.close(CanaryStatistics.binomialUpperTail(20, 1000, 0.01), 0.003288359787727457, relative: 1e-8))
        // 1 − 0.8¹⁰ by hand
        #expect(Self.close(CanaryStatistics.binomialUpperTail(1, 10, 0.2), 1 - pow(0.8, 10)))
        #expect(CanaryStatistics.binomialUpperTail(0, 10, 0.2) == 1)
        #expect(CanaryStatistics.binomialUpperTail(1, 10, 0) == 0)
    }

    @Test func twoProportionZMatchesStatsmodels() {
        // proportions_ztest([x1, x2], [n1, n2], alternative='larger')
        let (z, p) = CanaryStatistics.twoProportionZ(30, 500, 40, 2000)
        #expect(Self.close(z, 4.8492864496887185))
        #expect(Self.close(p, 6.19531912708796e-07, relative: 1e-8))
        let (z0, p0) = CanaryStatistics.twoProportionZ(10, 400, 40, 1600)
        #expect(abs(z0) < 1e-12)
        #expect(Self.close(p0, 0.5))
    }

    @Test func logFactorialAgreesWithTheGammaFunction() {
        for n in [0, 1, 2, 10, 170, 255, 256, 257, 1_000, 123_456, 10_000_000] {
            #expect(Self.close(CanaryStatistics.logFactorial(n), lgamma(Double(n) + 1), relative: 1e-13) || n < 2, "n = \(n)")
        }
        #expect(CanaryStatistics.logFactorial(0) == 0 && CanaryStatistics.logFactorial(1) == 0)
        #expect(Self.close(CanaryStatistics.logFactorial(10), log(3_628_800)))
    }

    @Test func nearestRankPercentilesMatchNumPysInvertedCDF() {
        // numpy.percentile(range(1, n + 1), q, method='inverted_cdf')
        for (n, p50, p99) in [(1, 1, 1), (7, 4, 7), (50, 25, 50), (100, 50, 99), (101, 51, 100), (200, 100, 198)] {
            let values = Array(1...n)
            #expect(CanaryStatistics.percentile(50, ofSorted: values) == p50, "n = \(n)")
            #expect(CanaryStatistics.percentile(99, ofSorted: values) == p99, "n = \(n)")
        }
        #expect(CanaryStatistics.percentile(99, ofSorted: []) == nil)
    }
}
