import Foundation

/// The one-sided tests canary analysis uses, each returning the probability
/// (p-value) of a result at least this bad for the canary if the canary were
/// in truth no worse. Pure functions of counts and samples.
public enum CanaryStatistics {
    /// P(Z ≥ z) for a standard normal Z.
    public static func upperNormalTail(_ z: Double) -> Double {
        0.5 * erfc(z / 2.0.squareRoot())
    }

    /// Mann-Whitney U of `larger` against `smaller`: counts the pairs where
    /// the first sample's value is larger (ties count one half), with the
    /// normal approximation, the tie correction of the variance and a
    /// continuity correction of one half. The p-value is for "values of
    /// `larger` are stochastically larger". When every value is tied, or a
    /// sample is empty, there is no evidence either way and p is 1.
    public static func mannWhitney(_ larger: [Int], _ smaller: [Int]) -> MannWhitneyResult {
        let n1 = larger.count, n2 = smaller.count
        guard n1 > 0, n2 > 0 else { return MannWhitneyResult(u: 0, z: 0, pValue: 1) }
        var values = larger.map { ($0, true) } + smaller.map { ($0, false) }
        values.sort { $0.0 < $1.0 }
        let n = values.count
        var rankSum = 0.0
        var tieTerm = 0.0 // Σ (t³ − t) over groups of equal values
        var start = 0
        while start < n {
            var end = start
            while end + 1 < n, values[end + 1].0 == values[start].0 { end += 1 }
            let midrank = Double(start + end + 2) / 2 // ranks are 1-based
            for i in start...end where values[i].1 { rankSum += midrank }
            let t = Double(end - start + 1)
            tieTerm += t * t * t - t
            start = end + 1
        }
        let a = Double(n1), b = Double(n2), total = Double(n)
        let u = rankSum - a * (a + 1) / 2
        let mean = a * b / 2
        let variance = a * b / 12 * ((total + 1) - tieTerm / (total * (total - 1)))
        guard variance > 0 else { return MannWhitneyResult(u: u, z: 0, pValue: 1) }
        let z = (u - mean - 0.5) / variance.squareRoot()
        return MannWhitneyResult(u: u, z: z, pValue: upperNormalTail(z))
    }

    /// The one-sided two-proportion z-test with the pooled proportion: is the
    /// first rate (x1 of n1) larger than the second (x2 of n2)?
    public static func twoProportionZ(_ x1: Int, _ n1: Int, _ x2: Int, _ n2: Int) -> (z: Double, pValue: Double) {
        guard n1 > 0, n2 > 0 else { return (0, 1) }
        let p1 = Double(x1) / Double(n1), p2 = Double(x2) / Double(n2)
        let pooled = Double(x1 + x2) / Double(n1 + n2)
        let variance = pooled * (1 - pooled) * (1 / Double(n1) + 1 / Double(n2))
        guard variance > 0 else { return (0, 1) }
        let z = (p1 - p2) / variance.squareRoot()
        return (z, upperNormalTail(z))
    }

    /// Fisher's exact test, one-sided: the probability, with both slots'
    /// totals and the total count fixed, that the first slot gets x1 or more
    /// of the x1 + x2 events (the hypergeometric upper tail).
    public static func fisherExact(_ x1: Int, _ n1: Int, _ x2: Int, _ n2: Int) -> Double {
        let population = n1 + n2, events = x1 + x2
        guard n1 > 0, n2 > 0, events > 0 else { return 1 }
        let highest = min(events, n1)
        // log P(X = x) = log C(events, x) + log C(population − events, n1 − x) − log C(population, n1)
        var logTerm = logChoose(events, x1) + logChoose(population - events, n1 - x1) - logChoose(population, n1)
        var sum = 0.0
        var x = x1
        while x <= highest {
            let term = exp(logTerm)
            sum += term
            // Past the mode the terms only shrink: stop once they no longer count.
            if term < sum * 1e-17 && Double(x) > Double(events) * Double(n1) / Double(population) { break }
            if x == highest { break }
            let ratio = Double(events - x) * Double(n1 - x) / (Double(x + 1) * Double(population - events - n1 + x + 1))
            logTerm += log(ratio)
            x += 1
        }
        return min(1, sum)
    }

    /// The exact binomial test, one-sided: P(X ≥ k) for X ~ Binomial(n, p0),
    /// i.e. how likely k or more events in n are if the true rate were p0.
    public static func binomialUpperTail(_ k: Int, _ n: Int, _ p0: Double) -> Double {
        guard k > 0 else { return 1 }
        guard k <= n else { return 0 }
        guard p0 > 0 else { return 0 }
        guard p0 < 1 else { return 1 }
        var logTerm = logChoose(n, k) + Double(k) * log(p0) + Double(n - k) * log1p(-p0)
        let odds = p0 / (1 - p0)
        var sum = 0.0
        var x = k
        while x <= n {
            let term = exp(logTerm)
            sum += term
            if term < sum * 1e-17 && Double(x) > Double(n) * p0 { break }
            if x == n { break }
            logTerm += log(Double(n - x) / Double(x + 1) * odds)
            x += 1
        }
        return min(1, sum)
    }

    static func logChoose(_ n: Int, _ k: Int) -> Double {
        logFactorial(n) - logFactorial(k) - logFactorial(n - k)
    }

    /// log(n!): summed exactly below 256, Stirling's series above (its error
    /// there is under 1e-20). Written here rather than calling `lgamma`, which
    /// sets a process-wide sign variable and so is not safe while regions are
    /// analysed in parallel.
    static func logFactorial(_ n: Int) -> Double {
        if n < smallLogFactorials.count { return smallLogFactorials[n] }
        let x = Double(n)
        let inverse = 1 / x, inverseSquared = inverse * inverse
        let series = inverse * (1.0 / 12 - inverseSquared * (1.0 / 360 - inverseSquared * (1.0 / 1260 - inverseSquared / 1680)))
        return x * log(x) - x + 0.5 * log(2 * Double.pi * x) + series
    }

    private static let smallLogFactorials: [Double] = {
        var table = [0.0]
        for i in 1..<256 { table.append(table[i - 1] + log(Double(i))) }
        return table
    }()

    /// The nearest-rank percentile of sorted values: the smallest value with
    /// at least `percent` % of the values at or below it (an observed value, never interpolated).
    public static func percentile(_ percent: Int, ofSorted values: [Int]) -> Int? {
        guard !values.isEmpty else { return nil }
        let rank = max(1, (percent * values.count + 99) / 100) // ⌈percent · n / 100⌉
        return values[min(rank, values.count) - 1]
    }
}

/// A Mann-Whitney U statistic with its normal approximation.
public struct MannWhitneyResult: Sendable, Equatable, Codable {
    /// Pairs (first, second) where the first is larger, ties counting one half.
    public var u: Double
    public var z: Double
    public var pValue: Double
}
